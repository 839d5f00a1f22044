// The details dashboard: where does the time go, and is the prober itself healthy?
local steps = import '../lib/steps.libsonnet';
local g = import 'lib.libsonnet';

local phases = [
  ['dns', 'Name resolution of the registry host, on new connections only (never for an IP literal).'],
  ['connect', 'TCP connect, on new connections only.'],
  ['tls', 'TLS handshake, on new https connections only.'],
  ['first_byte', 'From sending the request until the response head arrived (server think time).'],
  ['transfer', 'Reading the response body.'],
];

function(cfg)
  local d = g.new(cfg);
  local u = g.units;
  local T = g.T;
  local P = g.P;
  local S = g.S;
  local tps = [T, P, S];
  local over = ' over ' + g.baseline;
  local indexSteps = 'step=~"%s"' % steps.re(['push_index', 'pull_platform_manifest'] + steps.referrers);

  local phasePanel(phase, description) =
    local sel = [T, P, 'phase="%s"' % phase];
    g.timeseries(
      'HTTP %s p95 by path (dashed: over the last day)' % phase,
      u.seconds,
      [
        g.q(d.quantile(0.95, 'http_phase_duration_seconds', ['target', 'path'], sel), '{{target}} {{path}} p95'),
        g.q(d.quantile(0.95, 'http_phase_duration_seconds', ['target', 'path'], sel, g.baseline), '{{target}} {{path}} p95' + over),
      ],
      description,
      w=8,
      overrides=[g.dashed('B')],
    );

  [
    g.row('Step latency'),
    g.timeseries(
      'Step duration p95 by step (dashed: p95 over the last day)',
      u.seconds,
      [
        g.q(d.quantile(0.95, 'step_duration_seconds', ['step'], tps), '{{step}} p95'),
        g.q(d.quantile(0.95, 'step_duration_seconds', ['step'], tps, g.baseline), '{{step}} p95' + over),
      ],
      "95th percentile of each step's duration (token fetches and redirects included) for the selected "
      + 'targets, paths and size classes, with the same percentile over the last day as the usual level.',
      overrides=[g.dashed('B')],
    ),
    g.timeseries(
      'Step duration p50 and p99 (dashed) by step',
      u.seconds,
      [
        g.q(d.quantile(0.5, 'step_duration_seconds', ['step'], tps), '{{step}} p50'),
        g.q(d.quantile(0.99, 'step_duration_seconds', ['step'], tps), '{{step}} p99'),
      ],
      "Median (solid) and 99th percentile (dashed) of each step's duration.",
      overrides=[g.dashed('B')],
    ),
    g.heatmap(
      'Step duration distribution (selected steps)',
      u.seconds,
      'sum by (le) (increase(%s[%s]))' % [d.m('step_duration_seconds', tps, '_bucket'), g.rate],
      'How step durations spread over the histogram buckets (0.001 s to 65.5 s, doubling), all selected '
      + 'steps together.',
      w=12,
    ),
    g.timeseries(
      'Step duration p95 by path',
      u.seconds,
      [g.q(d.quantile(0.95, 'step_duration_seconds', ['target', 'path'], tps), '{{target}} {{path}} p95')],
      '95th percentile of all steps on each path: a slow mirror or cache stands out against the origin.',
      w=12,
    ),
    g.row('HTTP phases'),
  ]
  + [phasePanel(p[0], p[1]) for p in phases]
  + [
    g.timeseries(
      'HTTP exchanges by path and connection',
      u.reqPerS,
      [g.q('sum by (target, path, connection) (rate(%s[%s]))' % [d.m('http_requests_total', [T, P]), g.rate], '{{target}} {{path}} {{connection}}')],
      'HTTP exchanges per second (redirect hops and token fetches included), on new or reused connections.',
      w=8,
    ),
    g.row('Throughput'),
    g.timeseries(
      'Blob throughput p50 and p5 (dashed) by size class and direction',
      u.bytesPerS,
      [
        g.q(d.quantile(0.5, 'blob_throughput_bytes_per_second', ['size_class', 'direction'], tps), '{{size_class}} {{direction}} p50'),
        g.q(d.quantile(0.05, 'blob_throughput_bytes_per_second', ['size_class', 'direction'], tps), '{{size_class}} {{direction}} p5 (slowest 5%)'),
      ],
      'Per-blob transfer rate: median and the slow tail (5th percentile: 95% of transfers were faster). '
      + 'Small blobs are latency-bound, large ones show bandwidth.',
      overrides=[g.dashed('B')],
    ),
    g.timeseries(
      'Blob throughput p50 by path',
      u.bytesPerS,
      [g.q(d.quantile(0.5, 'blob_throughput_bytes_per_second', ['target', 'path', 'direction'], tps), '{{target}} {{path}} {{direction}} p50')],
      'Median per-blob transfer rate on each path (pushes only go to the origin).',
    ),
    g.timeseries(
      'Payload bytes by path and direction',
      u.bytesPerS,
      [g.q('sum by (target, path, direction) (rate(%s[%s]))' % [d.m('bytes_total', [T, P]), g.rate], '{{target}} {{path}} {{direction}}')],
      'Bytes per second the prober pushed and pulled: the load it puts on each path.',
    ),
    g.heatmap(
      'Blob throughput distribution',
      u.bytesPerS,
      'sum by (le) (increase(%s[%s]))' % [d.m('blob_throughput_bytes_per_second', tps, '_bucket'), g.rate],
      'Per-blob transfer rates over the histogram buckets (64 KiB/s to 16 GiB/s, doubling).',
    ),
    g.row('Propagation'),
    g.timeseries(
      'Propagation delay by path (dashed: p95 over the last day)',
      u.seconds,
      [
        g.q(d.quantile(0.5, 'propagation_delay_seconds', ['target', 'path'], [T, P]), '{{target}} {{path}} p50'),
        g.q(d.quantile(0.95, 'propagation_delay_seconds', ['target', 'path'], [T, P]), '{{target}} {{path}} p95'),
        g.q(d.quantile(0.95, 'propagation_delay_seconds', ['target', 'path'], [T, P], g.baseline), '{{target}} {{path}} p95' + over),
      ],
      'Time from the manifest PUT on the origin until each pull path served it (replication, mirror or '
      + 'cache delay): median, 95th percentile, and the 95th percentile over the last day (dashed).',
      overrides=[g.dashed('C')],
    ),
    g.heatmap(
      'Propagation delay distribution',
      u.seconds,
      'sum by (le) (increase(%s[%s]))' % [d.m('propagation_delay_seconds', [T, P], '_bucket'), g.rate],
      'Propagation delays over the histogram buckets (0.05 s to 409.6 s, doubling).',
    ),
    g.row('Referrers and indexes'),
    g.stat(
      'Referrers mode by path',
      u.count,
      [g.q('max by (target, path, mode) (%s)' % d.m('referrers_info', [T, P]), '{{target}} {{path}}: {{mode}}')],
      'How each path served referrers when a run last looked them up: api (the OCI 1.1 referrers API) '
      + 'or tag_schema (no referrers API: the sha256-<hex> referrers tag clients maintain). A path '
      + 'whose mode changes gained or lost its referrers API. Targets with artifacts only.',
      w=6,
      h=8,
    ),
    g.timeseries(
      'Referrers and index steps p95 by step',
      u.seconds,
      [g.q(d.quantile(0.95, 'step_duration_seconds', ['target', 'path', 'step'], tps + [indexSteps]), '{{target}} {{path}} {{step}} p95')],
      'Duration of the steps of multi-platform indexes (push_index, pull_platform_manifest) and of '
      + 'artifacts and their referrers (push_artifact, update_referrers_tag, list_referrers, '
      + 'pull_referrers_tag, pull_artifact): a referrers API that slows down under load shows here first.',
      w=9,
    ),
    g.timeseries(
      'Referrers and index steps failed by step',
      u.perMin,
      [g.q(d.perMinute('steps_total', ['target', 'path', 'step'], [T, P, indexSteps, 'result="failure"']), '{{target}} {{path}} {{step}}')],
      'Failed referrers and index steps per minute (RegistryProberReferrersFailing pages on the '
      + 'referrers ones); the reasons are in registry_prober_step_failures_total.',
      w=9,
      bars=true,
      stack=true,
    ),
    g.row('Prober self-health'),
    g.timeseries(
      'Runs in flight',
      u.count,
      [g.q('sum by (target, size_class) (%s)' % d.m('runs_in_flight', [T, S]), '{{target}} {{size_class}}')],
      'Runs in progress (0 or 1 per target and size class).',
      w=8,
      stack=true,
    ),
    g.timeseries(
      'Skipped runs by cause',
      u.perMin,
      [g.q(d.perMinute('skipped_runs_total', ['target', 'size_class', 'cause'], [T, S]), '{{target}} {{size_class}} {{cause}}')],
      'Scheduled runs skipped per minute: overrun (the previous run was still going: the interval is '
      + 'shorter than a run) or rate_limited (the registry sent 429 with Retry-After).',
      w=8,
      bars=true,
      stack=true,
    ),
    g.timeseries(
      'Schedule lag p50 and p99 (dashed)',
      u.seconds,
      [
        g.q(d.quantile(0.5, 'schedule_lag_seconds', ['instance'], []), '{{instance}} p50'),
        g.q(d.quantile(0.99, 'schedule_lag_seconds', ['instance'], []), '{{instance}} p99'),
      ],
      'How late runs started after they were due (a busy prober, the concurrency bound, or a starved host).',
      w=8,
      overrides=[g.dashed('B')],
    ),
    g.timeseries(
      'Time since last run vs. interval',
      u.seconds,
      [
        g.q('time() - max by (target, size_class) (%s)' % d.m('last_run_timestamp_seconds', [T, S]), '{{target}} {{size_class}} since last run'),
        g.q('max by (target, size_class) (%s)' % d.m('target_interval_seconds', [T, S]), '{{target}} {{size_class}} interval'),
      ],
      'Seconds since each target and size class last finished a run, against its configured interval '
      + '(dashed): far above it, the schedule is stuck.',
      w=8,
      overrides=[g.dashed('B')],
    ),
    g.timeseries(
      'Cleanup failures by step',
      u.perMin,
      [g.q(d.perMinute('cleanup_failures_total', ['target', 'step'], [T]), '{{target}} {{step}}')],
      'Failed cleanup steps per minute; each left a manifest, blob or upload session behind on the registry.',
      w=8,
      bars=true,
      stack=true,
    ),
    g.timeseries(
      'Upload sessions by outcome',
      u.perMin,
      [g.q(d.perMinute('upload_sessions_total', ['target', 'outcome'], [T]), '{{target}} {{outcome}}')],
      'Blob upload sessions per minute; abandoned ones (red) stay open on the registry until it purges them.',
      w=8,
      overrides=[g.red('.*abandoned.*')],
    ),
    g.timeseries(
      'Hygiene sweeps and swept objects',
      u.perMin,
      [
        g.q(d.perMinute('sweeps_total', ['target', 'result'], [T]), '{{target}} sweeps {{result}}'),
        g.q(d.perMinute('swept_objects_total', ['target', 'kind'], [T]), '{{target}} swept {{kind}}'),
      ],
      'Sweeps for leftovers of earlier runs (at start, then every hygiene interval), and the tags and '
      + 'upload sessions they removed.',
      w=8,
      bars=true,
    ),
    g.timeseries(
      'Blob mounts by outcome',
      u.perMin,
      [g.q(d.perMinute('blob_mounts_total', ['target', 'outcome'], [T]), '{{target}} {{outcome}}')],
      'Cross-repository blob mounts per minute: mounted (201), or fallback (202: the registry opened an '
      + 'upload session instead).',
      w=8,
      bars=true,
    ),
    g.timeseries(
      'Config reloads by result',
      u.count,
      [g.q('sum by (instance, result) (increase(%s[$__interval]))' % d.m('config_reloads_total'), '{{instance}} {{result}}')],
      "Configuration reloads (SIGHUP or file change) in each bar's interval, by result; a failed reload "
      + '(red) keeps the previous configuration running.',
      w=8,
      bars=true,
      overrides=[g.red('.*failure.*')],
    ),
    g.stat(
      'Last config reload',
      u.count,
      [g.q('max by (instance) (%s)' % d.m('config_last_reload_successful'), '{{instance}}')],
      'Whether the last configuration load or reload succeeded.',
      steps=g.thresholds(['red', 1, 'green']),
      w=6,
      mappings=[{
        type: 'value',
        options: {
          '0': { color: 'red', index: 0, text: 'failed' },
          '1': { color: 'green', index: 1, text: 'ok' },
        },
      }],
    ),
    g.stat(
      'Since the last successful config load',
      u.seconds,
      [g.q('time() - max by (instance) (%s)' % d.m('config_last_reload_success_timestamp_seconds'), '{{instance}}')],
      'Time since the prober last loaded its configuration successfully (start or reload).',
      w=6,
    ),
    g.stat(
      'Configured targets',
      u.count,
      [g.q('max by (instance) (%s)' % d.m('targets'), '{{instance}}')],
      'Targets in the running configuration.',
      w=6,
    ),
    g.stat(
      'Prober version',
      u.count,
      [g.q('count by (instance, version) (%s)' % d.m('build_info'), '{{instance}} {{version}}')],
      'Running builds: the version is in the series name.',
      w=6,
    ),
  ]
