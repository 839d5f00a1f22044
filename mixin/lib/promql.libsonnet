// Text helpers for the rules: number and duration literals, selectors with the configured
// matchers, and by/on clauses that keep the configured group labels. Grouping goes through
// by()/on() only, so a group label reaches every aggregation and join by construction.
{
  // `x` as a PromQL literal: 3 not 3.0, 0.05 not 0.050000000000000003 (jsonnet prints numbers
  // with %.17g, and its %g rounds small numbers wrongly): the fewest decimals that read back as
  // x. 10^p is exact for p <= 22, so the one rounding of k / 10^p gives the double nearest the
  // decimal k * 10^-p, as parsing that decimal does.
  num(x)::
    local decimals(p) = if p >= 17 || std.floor(x * std.pow(10, p) + 0.5) / std.pow(10, p) == x then p else decimals(p + 1);
    if std.floor(x) == x then '%d' % x else ('%.' + decimals(1) + 'f') % x,

  // Prometheus durations with one unit (what the rules write): '15m' -> 900.
  unitSeconds:: { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 },
  splitDuration(d)::
    local chars = std.stringChars(d);
    local digits = std.length(std.filter(function(c) c >= '0' && c <= '9', chars));
    // the digits must all come first: '1h30m' and 'm5' are not one-unit durations
    local lead = std.length(std.filter(function(c) c >= '0' && c <= '9', chars[0:digits]));
    if digits > 0 && lead == digits && digits < std.length(d)
    then { n: std.parseInt(d[0:digits]), unit: d[digits:] }
    else null,
  isDuration(d)::
    std.isString(d) && self.splitDuration(d) != null && std.objectHas(self.unitSeconds, self.splitDuration(d).unit),
  seconds(d)::
    local p = self.splitDuration(d);
    p.n * self.unitSeconds[p.unit],

  // `text` with every non-blank line moved right by `n` spaces (Python's textwrap.indent).
  indent(text, n)::
    std.join('\n', [if std.length(std.stripChars(l, ' ')) > 0 then std.repeat(' ', n) + l else l for l in std.split(text, '\n')]),

  // `p95`, `p99_9`: a quantile in a recording rule's name or a description.
  quantileName(q):: 'p' + std.strReplace(self.num(q * 100), '.', '_'),

  // The helpers that depend on the configuration.
  new(cfg):: {
    local promql = $,
    local groups = cfg.registryProberGroupLabels,
    local selector = cfg.registryProberSelector,

    // The configured group labels, then `labels`.
    labels(labels):: std.join(', ', groups + labels),
    by(labels):: 'by (%s)' % self.labels(labels),
    on(labels):: 'on (%s)' % self.labels(labels),

    // A selector of the prober's series: the configured matchers first.
    sel(name, matchers=[]):: '%s{%s}' % [name, std.join(', ', [selector] + matchers)],

    // A query inside a Go template printf, with `args` filling its %q verbs. A `%` of the
    // selector must not be read as a verb; each group label becomes one more %q with the
    // alert's own value, so the query reads the alert's location, not all of them.
    tsel(name, matchers=[]):: '%s{%s}' % [
      name,
      std.join(',', [std.strReplace(selector, '%', '%%')] + matchers + ['%s=%%q' % l for l in groups]),
    ],
    targs(args):: std.join(' ', args + ['$labels.' + l for l in groups]),

    // A Go template listing `value (count), ...` of a counter's increase over `window` by the
    // label `by`, largest first, for the alert's own labels `args` (filling the %q verbs).
    reasons(query, by, window, args)::
      local q = 'sort_desc(sum by (%s) (increase(%s[%s])) > 0)' % [by, query, window];
      '{{ range $i, $r := printf `' + q + '` ' + self.targs(args) + ' | query }}'
      + '{{ if $i }}, {{ end }}{{ $r.Labels.' + by + ' }} ({{ printf `%.0f` $r.Value }})'
      + '{{ else }}none recorded{{ end }}',

    // An alerting rule: `severity` is its only static label, the runbook link is the
    // runbook's section of the same name. A `for` of 0 is left out (fires at once).
    alert(name, expr, severity, for_, summary, description)::
      {
        alert: name,
        expr: std.rstripChars(expr, '\n'),
        labels: { severity: severity },
        annotations: {
          summary: summary,
          description: description,
          runbook_url: '%s#%s' % [cfg.registryProberRunbookURL, std.asciiLower(name)],
        },
      } + (if promql.seconds(for_) > 0 then { 'for': for_ } else {}),

    record(name, expr):: { record: name, expr: std.rstripChars(expr, '\n') },
  },
}
