// expect: _config.registryProberAlerts.RegistryProberCleanupFailing.window: "1h30m" is not a Prometheus duration with one unit
{ _config+:: { registryProberAlerts+: { RegistryProberCleanupFailing+: { window: '1h30m' } } } }
