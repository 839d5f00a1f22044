// expect: _config.registryProberAlerts.RegistryProberPathFailing.minFailurs: unknown key
{ _config+:: { registryProberAlerts+: { RegistryProberPathFailing+: { minFailurs: 5 } } } }
