// expect: _config.registryProberAlerts.RegistryProberDown.severity: "page" is not "critical" or "warning"
{ _config+:: { registryProberAlerts+: { RegistryProberDown+: { severity: 'page' } } } }
