// expect: _config.registryProberAlerts.RegistryProberTLSCertificateExpiring: criticalWithin (30d) must be shorter than warningWithin (14d)
{ _config+:: { registryProberAlerts+: { RegistryProberTLSCertificateExpiring+: { criticalWithin: '30d' } } } }
