// expect: _config.registryProberAlerts.RegistryProberRateLimited.minRuns: 0 is below 1
{ _config+:: { registryProberAlerts+: { RegistryProberRateLimited+: { minRuns: 0 } } } }
