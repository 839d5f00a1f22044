// The defaults of every setting of the registry-prober mixin. Override them by merging:
//   (import 'mixin.libsonnet') + { _config+:: { registryProberSelector: 'job="probers"' } }
// Every field is prefixed `registryProber` so this mixin's _config merges with other mixins'
// (kube-prometheus puts them in one object); the per-alert settings live in one object,
// `registryProberAlerts`, whose alert names and keys are checked (a typo is an error, not a
// silently ignored field). Durations are Prometheus durations (30s, 15m, 1h, 1d, 1w: one
// unit each); `severity` is critical (pages) or warning (opens a ticket); `for` is how long the
// condition must hold before the alert fires (0s: at once); `enabled: false` drops an alert.
{
  _config+:: {
    // Label matchers added to every selector of the rules, so they only see the prober's own
    // series (and `up`/`absent` know which scrape job is the prober). Match your scrape job.
    registryProberSelector: 'job="registry-prober"',

    // Where the runbook lives; each alert links to `<this>#<alert name in lower case>`. Point
    // it at your fork or your internal copy of alerts/runbook.md.
    registryProberRunbookURL: 'https://github.com/registry-prober/registry-prober/blob/main/alerts/runbook.md',

    // Labels that tell apart probers feeding one Prometheus (the chart's ServiceMonitor adds
    // `location`; a multi-cluster setup adds `cluster`). Every `by (...)` and `on (...)` of the
    // rules keeps them, so a failure seen from one location is its own alert, not diluted by
    // the healthy ones; the queries in the alert descriptions are limited to the alert's
    // values of them; the dashboards get a variable for each. Empty: one set of probers.
    registryProberGroupLabels: [],

    // Labels the dashboards get a variable for (multi-select; "All" is `.*`, which also matches
    // series without the label), and that every panel selector is scoped to, besides target,
    // path and size class. The group labels above are added to these. `location` by default:
    // the chart's label, harmless without it.
    registryProberDashboardScopeLabels: ['location'],

    registryProberAlerts: {
      // A step keeps failing through one path (origin, replica, mirror, cache...) of a target:
      // the share of the runs over `window` in which the step failed through the path (failed
      // steps of (target, path, step) over the runs of the size classes that take it; per run,
      // not per execution, since a broken run stops at the first of the blobs a healthy run
      // repeats the step for). Both the ratio and a count of at least `minFailures` failed runs
      // must be reached, so one failed run never pages, and a target probed every few minutes is
      // left to RegistryProberTargetStale. Cleanup steps and wait_propagation have their own
      // alerts and are not counted here.
      RegistryProberPathFailing: {
        enabled: true,
        severity: 'critical',
        'for': '5m',
        window: '15m',
        failureRatio: 0.25,
        minFailures: 3,
      },

      // Pushes fail while pulls of old content (golden images, canaries) through the same
      // target keep working: the Uber incident (the upload folder full, pulls fine). Needs
      // golden images or canaries configured; without them, RegistryProberPathFailing still
      // pages on the push steps.
      RegistryProberPushFailingPullsWork: {
        enabled: true,
        severity: 'critical',
        'for': '5m',
        window: '15m',
        // share of the runs in which a push step (check_blob, start_upload, upload_blob,
        // mount_blob, push_manifest) failed, and the failed runs that must be among them
        failureRatio: 0.25,
        minFailures: 3,
        // pulls count as working when at most this share of old-content pull steps failed (per
        // step execution: a few failed pulls of old content do not hide a push outage)
        maxPullFailureRatio: 0.05,
      },

      // The registry served bytes other than those pushed: a digest or size mismatch on any
      // step, a canary whose manifest changed (content_changed), or a layer of a golden image
      // or canary that does not unpack to its DiffID (diff_id_mismatch, layer_unreadable). Never a blip: pages on the
      // first one and stays firing for `window` after the last one.
      RegistryProberContentMismatch: {
        enabled: true,
        severity: 'critical',
        'for': '0s',
        window: '1h',
      },

      // Artifacts cannot be found through their subject's referrers (signatures, SBOMs: what
      // `cosign verify` and admission policies read before a deploy): a referrers step
      // (push_artifact, update_referrers_tag, list_referrers, pull_referrers_tag, pull_artifact)
      // failed in `failureRatio` of its executions through a path over `window`, at least
      // `minFailures` times. Pages like a failing pull; these steps are left out of
      // RegistryProberPathFailing so one outage pages once.
      RegistryProberReferrersFailing: {
        enabled: true,
        severity: 'critical',
        'for': '5m',
        window: '15m',
        failureRatio: 0.25,
        minFailures: 3,
      },

      // Old content is gone: a golden image or a canary (or one of their blobs) answers
      // BLOB_UNKNOWN, MANIFEST_UNKNOWN or NAME_UNKNOWN (the Wikimedia incident: layers deleted
      // under existing manifests while new pushes worked). Pages on the first one.
      RegistryProberContentLost: {
        enabled: true,
        severity: 'critical',
        'for': '0s',
        window: '1h',
      },

      // Every run of a (target, size class) fails, confirmed: its last `failedRuns` runs failed in
      // a row (registry_prober_consecutive_failed_runs). After a failed run the prober runs the
      // class again a few seconds later (confirmation_runs, default 2, confirmation_delay 5s), so
      // a hard outage (registry down, pushes broken, DNS failing) is confirmed within seconds and
      // pages within about a minute, while one transient failure is cleared by the next run and
      // never pages. Without confirmations (turned off, used up by a flapping registry, or a slow
      // failure such as a timeout) the scheduled runs confirm: `failedRuns` intervals. Keep
      // `failedRuns` at the prober's confirmation_runs + 1. `path` and `step` name the first
      // failed step of the latest failed run.
      RegistryProberTargetFailing: {
        enabled: true,
        severity: 'critical',
        'for': '0s',
        failedRuns: 3,
        // the description lists the class's failed runs by reason over this
        reasonsWindow: '15m',
      },

      // No successful run of a (target, size class) for `intervals` of its own configured
      // interval (registry_prober_target_interval_seconds). Also fires after a prober restart,
      // when the last-success gauge is absent until a success: then it counts failed and
      // skipped runs since the start instead.
      RegistryProberTargetStale: {
        enabled: true,
        severity: 'critical',
        'for': '0s',
        intervals: 5,
        // the description lists failed runs by reason and skipped runs by cause over this
        reasonsWindow: '1h',
      },

      // The prober's scrape fails (up == 0), or no scrape of its job exists at all: nothing
      // else here can fire while the prober is not scraped.
      RegistryProberDown: {
        enabled: true,
        severity: 'critical',
        'for': '5m',
      },
      RegistryProberAbsent: {
        enabled: true,
        severity: 'critical',
        'for': '10m',
      },

      // A step's latency quantile over `window` against its own baseline: the median, over
      // `baselineWindow`, of that same windowed quantile (so a regression has to last half the
      // baseline window before it becomes the baseline). Per target, path, size class and step
      // (a 64 MiB upload and a 4 KiB one have different normals). Fires when the recent value is
      // at least `factor` times the baseline AND at least `minIncrease` above it (2 ms -> 5 ms is
      // noise), with at least `minSamples` observations in the window. wait_propagation is left
      // to RegistryProberPropagationSlow. The two windowed values are recording rules (kept when
      // the alert is disabled) that dashboards can use too.
      RegistryProberStepLatencyRegression: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        quantile: 0.95,
        window: '30m',
        baselineWindow: '1d',
        factor: 2,
        minIncrease: '250ms',
        minSamples: 10,
      },

      // The time from the manifest PUT on the origin until a pull path served it
      // (registry_prober_propagation_delay_seconds), as a quantile over `window`. Keep
      // `threshold` below the paths' propagation_timeout: a timeout is not observed in this
      // histogram, it is a failure of wait_propagation (next alert).
      RegistryProberPropagationSlow: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        quantile: 0.95,
        window: '30m',
        threshold: '15s',
        minSamples: 3,
      },

      // wait_propagation keeps failing for a path: the pushed image did not show up there
      // before the path's propagation_timeout (reason propagation_timeout), or the path could
      // not be asked at all (any other reason). A ratio of executions and a count.
      RegistryProberPropagationFailing: {
        enabled: true,
        severity: 'critical',
        'for': '5m',
        window: '15m',
        failureRatio: 0.25,
        minFailures: 3,
      },

      // Cleanup steps (delete_manifest, delete_blob, cancel_upload) fail: each failure leaves
      // something on the registry. Ratio of failed to executed cleanup steps over `window`.
      RegistryProberCleanupFailing: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        window: '1h',
        failureRatio: 0.2,
        minFailures: 3,
      },

      // Upload sessions the prober opened and could neither complete nor cancel (they hold
      // upload storage on the registry until it purges them). A count over `window`.
      RegistryProberUploadSessionsAbandoned: {
        enabled: true,
        severity: 'warning',
        'for': '5m',
        window: '1h',
        minAbandoned: 3,
      },

      // Hygiene sweeps (leftover tags and upload sessions of crashed runs) fail. Sweeps run
      // once an hour by default, so the window is long.
      RegistryProberSweepsFailing: {
        enabled: true,
        severity: 'warning',
        'for': '0s',
        window: '6h',
        failureRatio: 0.5,
        minFailures: 2,
      },

      // The earliest-expiring leaf certificate seen on a path (registry, token service, or blob
      // storage behind a redirect) expires within `warningWithin` (warning) or `criticalWithin`
      // (critical). The warning stops when the critical one starts.
      RegistryProberTLSCertificateExpiring: {
        enabled: true,
        warningWithin: '14d',
        criticalWithin: '3d',
        warningFor: '1h',
        criticalFor: '15m',
      },

      // The registry keeps answering 429: skipped runs (cause rate_limited, waiting for
      // Retry-After) plus runs that failed with reason rate_limited, over scheduled runs.
      RegistryProberRateLimited: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        window: '1h',
        ratio: 0.25,
        minRuns: 3,
      },

      // The registry says little of its rate limit is left on a path (RateLimit or X-RateLimit
      // headers; Docker Hub counts manifest GETs as pulls): the prober, and whatever shares its
      // account or address, is about to be throttled. `ratio` of the limit left or less.
      RegistryProberRateLimitLow: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        ratio: 0.1,
      },

      // Prober self-health. Runs skipped because the previous run of the same target was still
      // going (cause overrun): the interval is shorter than a run.
      RegistryProberRunsOverrunning: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        window: '1h',
        minSkipped: 3,
      },

      // Runs start late (registry_prober_schedule_lag_seconds): max_concurrent_runs is
      // saturated or the process is starved of CPU. Quantile over `window`.
      RegistryProberScheduleLagging: {
        enabled: true,
        severity: 'warning',
        'for': '15m',
        quantile: 0.95,
        window: '15m',
        threshold: '5s',
        minSamples: 10,
      },

      // The last configuration reload failed; the prober keeps running the previous
      // configuration.
      RegistryProberConfigReloadFailed: {
        enabled: true,
        severity: 'warning',
        'for': '10m',
      },
    },
  },
}
