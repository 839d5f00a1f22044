// The chart's copies (charts/registry-prober/files/): probers in several locations may feed one
// Prometheus, and the chart's ServiceMonitor puts `location` on every series, so the rules
// keep it in every aggregation and join. The chart's template then scopes every selector to
// its own job and location.
{
  _config+:: {
    registryProberGroupLabels+: ['location'],
  },
}
