// A registry path keeps failing a step, and pushes failing while pulls of old content work.
local promql = import '../lib/promql.libsonnet';
local steps = import '../lib/steps.libsonnet';

function(cfg)
  local q = promql.new(cfg);
  local a = cfg.registryProberAlerts;

  // Both alerts count runs, not executions: a step such as start_upload, upload_blob or
  // pull_blob runs once per blob in a healthy run, and a broken run stops at its first failure,
  // so failed / executed climbs at 1/blobs the rate of failing runs. Failed executions over runs
  // is the share of runs in which the step failed, except that a step can fail more than once
  // in a run (once per golden image or canary, or an image and a canary push both failing): the
  // smaller of its failures and the failed runs is the most runs it can have failed in, and
  // minFailures applies to that, so one failed run never pages.

  // Runs over `w` of the size classes that take the steps `stepMatcher` selects, per `by`
  // (target and step, and path if given). A class takes a step (through a path) when the step's
  // duration histogram has a series for them: it is created on the first execution, failed ones
  // included. Golden images and canaries are checked by the first size class only.
  local runsTaking(w, stepMatcher, by, result=null) =
    |||
      sum %(by)s (
        sum %(byRun)s (increase(%(runs)s[%(w)s]))
        * %(onRun)s group_right
        group %(inner)s (%(taken)s)
      )
    ||| % {
      by: q.by(by),
      byRun: q.by(['target', 'size_class']),
      onRun: q.on(['target', 'size_class']),
      inner: q.by(['target', 'size_class'] + [l for l in by if l != 'target']),
      runs: q.sel('registry_prober_runs_total', if result == null then [] else ['result="%s"' % result]),
      taken: q.sel('registry_prober_step_duration_seconds_count', [stepMatcher]),
      w: w,
    };

  // The share of runs in which a step failed, when at least `minf` runs failed it and the
  // share is at least `ratio`.
  local failedInRuns(w, failed, stepMatcher, by, minf, ratio) =
    local failedRuns = std.rstripChars(runsTaking(w, stepMatcher, by, 'failure'), '\n');
    |||
      (
        (
          # failed executions of the step...
          (
            sum %(by)s (increase(%(failed)s[%(w)s]))
            <=
      %(failedRuns6)s
          )
          # ...or the failed runs, when fewer
          or
      %(failedRuns4)s
        )
        # in at least %(minf)s runs: one failed run (or a few) is not an outage
        >= %(minf)s
      )
      /
      # over the runs
      %(runs)s
      >= %(ratio)s
    ||| % {
      by: q.by(by),
      failed: failed,
      w: w,
      failedRuns6: promql.indent(failedRuns, 6),
      failedRuns4: promql.indent(failedRuns, 4),
      minf: promql.num(minf),
      runs: std.rstripChars(runsTaking(w, stepMatcher, by), '\n'),
      ratio: promql.num(ratio),
    };

  local pathFailing =
    local p = a.RegistryProberPathFailing;
    local stepMatcher = 'step!~"%s"' % steps.re(steps.cleanup + ['wait_propagation'] + steps.referrers);
    local failed = q.sel('registry_prober_steps_total', ['result="failure"', stepMatcher]);
    q.alert(
      'RegistryProberPathFailing',
      |||
        # the share of the runs in which a step through a path failed. Runs of the size classes that
        # take the step through the path (golden images and canaries: the first size class only). A
        # step can fail more than once in a run (once per golden image or canary) and only in a
        # failed run: the smaller of its failures and the failed runs is the most runs it failed in.
      ||| + failedInRuns(p.window, failed, stepMatcher, ['target', 'path', 'step'], p.minFailures, p.failureRatio),
      p.severity,
      p['for'],
      'A registry path keeps failing a probe step.',
      'Step {{ $labels.step }} through path {{ $labels.path }} of target {{ $labels.target }} failed in '
      + '{{ $value | humanizePercentage }} of the runs over the last %s. Reasons: ' % p.window
      + q.reasons(
        q.tsel('registry_prober_step_failures_total', ['target=%q', 'path=%q', 'step=%q']),
        'reason',
        p.window,
        ['$labels.target', '$labels.path', '$labels.step'],
      )
      + '.',
    );

  local pushFailingPullsWork =
    local p = a.RegistryProberPushFailingPullsWork;
    local pushMatcher = 'step=~"%s"' % steps.re(steps.push);
    local oldMatcher = 'step=~"%s"' % steps.re(steps.oldContent);
    local steps_(matchers) = q.sel('registry_prober_steps_total', matchers);
    q.alert(
      'RegistryProberPushFailingPullsWork',
      |||
        # a push step fails in a share of the runs, counted as in RegistryProberPathFailing (per step:
        # one failing step among five would be diluted in a sum; an image and a canary push can both
        # fail in one run)...
      |||
      + failedInRuns(p.window, steps_(['result="failure"', pushMatcher]), pushMatcher, ['target', 'step'], p.minFailures, p.failureRatio)
      + |||
        # ...while pulls of content already on the registry (golden images, canaries) succeed. Per
        # execution, unlike the push side: "pulls work" is a health test over five steps of different
        # multiplicity, and a single failed pull of old content must not hide a push outage.
        and %(onT)s
        sum %(byT)s (increase(%(oldOk)s[%(w)s])) > 0
        and %(onT)s
        (
          sum %(byT)s (increase(%(oldFailed)s[%(w)s]))
          /
          sum %(byT)s (increase(%(oldAll)s[%(w)s]))
        ) <= %(max)s
      ||| % {
        onT: q.on(['target']),
        byT: q.by(['target']),
        oldOk: steps_(['result="success"', oldMatcher]),
        oldFailed: steps_(['result="failure"', oldMatcher]),
        oldAll: steps_([oldMatcher]),
        w: p.window,
        max: promql.num(p.maxPullFailureRatio),
      },
      p.severity,
      p['for'],
      'Pushes to a registry fail while pulls of existing images work.',
      'Push step {{ $labels.step }} of target {{ $labels.target }} failed in {{ $value | humanizePercentage }} '
      + 'of the runs over the last %s, while pulls of its golden images and canaries succeeded. Reasons: ' % p.window
      + q.reasons(
        q.tsel('registry_prober_step_failures_total', ['target=%q', 'step=%q']),
        'reason',
        p.window,
        ['$labels.target', '$labels.step'],
      )
      + '.',
    );

  {
    name: 'registry-prober.paths',
    rules:
      (if a.RegistryProberPathFailing.enabled then [pathFailing] else [])
      + (if a.RegistryProberPushFailingPullsWork.enabled then [pushFailingPullsWork] else []),
  }
