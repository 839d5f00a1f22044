// expect: _config.registryProberAlerts.RegistryProberPathFailing.failureRatio: 2 is not in (0, 1]
{ _config+:: { registryProberAlerts+: { RegistryProberPathFailing+: { failureRatio: 2 } } } }
