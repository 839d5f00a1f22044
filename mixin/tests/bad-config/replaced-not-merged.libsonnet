// expect: _config.registryProberAlerts.RegistryProberPathFailing.window: missing (merge with `RegistryProberPathFailing+: {...}`
{ _config+:: { registryProberAlerts+: { RegistryProberPathFailing: { enabled: false } } } }
