// expect: _config.registryProberAlerts.RegistryProberPathFailng: unknown alert
{ _config+:: { registryProberAlerts+: { RegistryProberPathFailng+: { window: '1h' } } } }
