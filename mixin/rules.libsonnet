// prometheusRules: the recording rules (lib/recorded.libsonnet).
local recorded = import 'lib/recorded.libsonnet';
local validate = import 'lib/validate.libsonnet';

{
  prometheusRules+:: {
    local cfg = validate.checked($._config),
    groups+: [{ name: 'registry-prober.recording', rules: recorded(cfg).rules }],
  },
}
