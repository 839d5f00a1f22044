// The registry served other bytes than were pushed, or lost content it held.
local promql = import '../lib/promql.libsonnet';
local steps = import '../lib/steps.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local a = cfg.registryProberAlerts;

  // Failures of a (step, reason) over the window. The first failure of a (step, reason)
  // creates its series (they are not pre-created), which increase() cannot see: a series that
  // did not exist a window ago counts too.
  local appeared(name, matchers, summary, meaning) =
    local p = a[name];
    local series = q.sel('registry_prober_step_failures_total', matchers);
    local by = q.by(['target', 'path', 'step', 'reason']);
    q.alert(
      name,
      |||
        sum %(by)s (increase(%(series)s[%(w)s])) > 0
        # the first failure of a (step, reason) creates its series (they are not pre-created), which
        # increase() cannot see: a series that did not exist %(w)s ago counts too
        or
        sum %(by)s (%(series)s unless %(series)s offset %(w)s)
      ||| % { by: by, series: series, w: p.window },
      p.severity,
      p['for'],
      summary,
      'Step {{ $labels.step }} through path {{ $labels.path }} of target {{ $labels.target }} failed with '
      + '{{ $labels.reason }} ({{ printf `%%.0f` $value }} in the last %s): %s' % [p.window, meaning],
    );

  local mismatch = appeared(
    'RegistryProberContentMismatch',
    ['reason=~"digest_mismatch|size_mismatch|content_changed|diff_id_mismatch|layer_unreadable"'],
    'The registry served content other than what was pushed.',
    'the registry served bytes or a manifest other than those pushed, or a layer that does not '
    + 'unpack to its DiffID. The prober logs and status page name the image, the blob, and the '
    + 'expected and actual digest and length.',
  );
  local lost = appeared(
    'RegistryProberContentLost',
    ['step=~"%s"' % steps.re(steps.oldContent), 'reason=~"blob_unknown|manifest_unknown|name_unknown"'],
    'Content the registry held is gone.',
    'a golden image or a canary (or one of their blobs) that the registry held is no longer there. '
    + 'The prober logs and status page name the image and what is missing.',
  );

  {
    name: 'registry-prober.integrity',
    rules:
      (if a.RegistryProberContentMismatch.enabled then [mismatch] else [])
      + (if a.RegistryProberContentLost.enabled then [lost] else []),
  }
