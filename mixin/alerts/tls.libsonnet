// A TLS certificate of a path expires soon: a warning, then a critical alert of the same name.
local promql = import '../lib/promql.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local p = cfg.registryProberAlerts.RegistryProberTLSCertificateExpiring;
  local name = 'RegistryProberTLSCertificateExpiring';
  local left = 'min %s (%s) - time()' % [q.by(['target', 'path']), q.sel('registry_prober_tls_certificate_expiry_timestamp_seconds')];
  local warnS = promql.num(promql.seconds(p.warningWithin));
  local critS = promql.num(promql.seconds(p.criticalWithin));
  local summary = 'A TLS certificate of a registry path expires soon.';
  local description = 'The earliest-expiring TLS certificate the prober saw on path {{ $labels.path }} of target '
                      + '{{ $labels.target }} expires in {{ $value | humanizeDuration }}.';
  local warning = q.alert(
    name,
    '# %s..%s left (below that the critical rule takes over)\n%s < %s\nand\n%s >= %s' % [p.warningWithin, p.criticalWithin, left, warnS, left, critS],
    'warning',
    p.warningFor,
    summary,
    description,
  );
  local critical = q.alert(
    name,
    '# less than %s left\n%s < %s' % [p.criticalWithin, left, critS],
    'critical',
    p.criticalFor,
    summary,
    description,
  );

  { name: 'registry-prober.tls', rules: if p.enabled then [warning, critical] else [] }
