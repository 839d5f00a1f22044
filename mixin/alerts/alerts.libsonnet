// prometheusAlerts: one group per concern, in the order of alerts/runbook.md; a group whose
// alerts are all disabled is left out.
local validate = import '../lib/validate.libsonnet';

local groups = [
  import 'paths.libsonnet',
  import 'integrity.libsonnet',
  import 'referrers.libsonnet',
  import 'freshness.libsonnet',
  import 'propagation.libsonnet',
  import 'latency.libsonnet',
  import 'hygiene.libsonnet',
  import 'tls.libsonnet',
  import 'rate-limits.libsonnet',
  import 'prober.libsonnet',
];

{
  prometheusAlerts+:: {
    local cfg = validate.checked($._config),
    groups+: [g for g in [group(cfg) for group in groups] if g.rules != []],
  },
}
