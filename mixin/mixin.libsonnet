// The registry-prober monitoring mixin: alerting rules, recording rules and Grafana dashboards
// for the metrics the prober exposes (`registry-prober metrics-contract` lists them). Configure
// it through _config (config.libsonnet documents every field); mixin/README.md shows how.
(import 'config.libsonnet')
+ (import 'alerts/alerts.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'dashboards/dashboards.libsonnet')
