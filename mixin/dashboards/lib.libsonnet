// Panel builders for plain Grafana JSON (grafonnet is not a dependency): every panel gets the
// data source variable and a unit, every selector the scope variables, and layout() flows the
// panels into Grafana's 24-column grid. Sizes are hidden fields (_w, _h), not rendered.
local promql = import '../lib/promql.libsonnet';

{
  ds:: { type: 'prometheus', uid: '${datasource}' },
  rate:: '$__rate_interval',
  // the window of the dashed "usual" line next to a current percentile
  baseline:: '1d',
  success:: 'result="success"',
  failure:: 'result="failure"',
  T:: 'target=~"$target"',
  P:: 'path=~"$path"',
  S:: 'size_class=~"$size_class"',

  // Grafana unit ids
  units:: { seconds: 's', ratio: 'percentunit', perMin: 'opm', bytesPerS: 'binBps', reqPerS: 'reqps', count: 'none' },

  legend(by):: std.join(' ', ['{{%s}}' % l for l in by]),

  // thresholds(['green', 0.95, 'yellow']): a colour, then value/colour pairs upwards.
  thresholds(steps):: {
    mode: 'absolute',
    steps: [{ color: steps[0], value: null }]
           + [{ color: steps[i + 1], value: steps[i] } for i in std.range(1, std.length(steps) - 1) if i % 2 == 1],
  },
  neutral:: self.thresholds(['green']),

  q(expr, legendFormat='', ref=null, heatmap=false, instant=false):: {
    datasource: $.ds,
    editorMode: 'code',
    expr: expr,
    legendFormat: legendFormat,
    refId: ref,
    instant: instant,
    range: !instant,
  } + (if heatmap then { format: 'heatmap' } else {}),

  // Override: draw query `ref` (the baseline) as a dashed line.
  dashed(ref):: {
    matcher: { id: 'byFrameRefID', options: ref },
    properties: [{ id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } }],
  },
  // Override: series whose name matches `regex` in red.
  red(regex):: {
    matcher: { id: 'byRegexp', options: regex },
    properties: [{ id: 'color', value: { fixedColor: 'red', mode: 'fixed' } }],
  },

  panel(kind, title, unit, targets, description, w, h, defaults={}, overrides=[], options=null):: {
    type: kind,
    title: title,
    description: description,
    datasource: $.ds,
    fieldConfig: { defaults: { unit: unit } + defaults, overrides: overrides },
    // refIds A, B, C... in order, unless a query names its own
    targets: [
      targets[i] { refId: if targets[i].refId == null then std.char(std.codepoint('A') + i) else targets[i].refId }
      for i in std.range(0, std.length(targets) - 1)
    ],
    _w:: w,
    _h:: h,
  } + (if options == null then {} else { options: options }),

  timeseries(title, unit, targets, description, w=12, h=8, min=null, max=null, overrides=[], noValue=null, stack=false, bars=false)::
    local custom = {
      drawStyle: if bars then 'bars' else 'line',
      fillOpacity: if stack || bars then 30 else 10,
      lineWidth: 1,
      showPoints: 'never',
      spanNulls: false,
      stacking: { group: 'A', mode: if stack then 'normal' else 'none' },
    };
    local optional = { min: min, max: max, noValue: noValue };
    local defaults = { color: { mode: 'palette-classic' }, custom: custom, thresholds: $.neutral }
                     + { [k]: optional[k] for k in std.objectFields(optional) if optional[k] != null };
    local options = {
      legend: { calcs: ['mean', 'max'], displayMode: 'table', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'multi', sort: 'desc' },
    };
    $.panel('timeseries', title, unit, targets, description, w, h, defaults, overrides, options),

  // A single value per series: every query is instant.
  stat(title, unit, targets, description, steps=null, w=4, h=5, mappings=null, decimals=null)::
    local defaults = { color: { mode: 'thresholds' }, thresholds: if steps == null then $.neutral else steps }
                     + (if mappings == null then {} else { mappings: mappings })
                     + (if decimals == null then {} else { decimals: decimals });
    local options = {
      colorMode: 'value',
      graphMode: 'none',
      justifyMode: 'auto',
      orientation: 'auto',
      percentChangeColorMode: 'standard',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showPercentChange: false,
      textMode: 'value_and_name',
      wideLayout: true,
    };
    $.panel('stat', title, unit, [t { instant: true, range: false } for t in targets], description, w, h, defaults, [], options),

  heatmap(title, unit, expr, description, w=12, h=8)::
    local defaults = {
      custom: {
        hideFrom: { legend: false, tooltip: false, viz: false },
        scaleDistribution: { type: 'linear' },
      },
    };
    local options = {
      calculate: false,
      cellGap: 1,
      color: { exponent: 0.5, fill: 'dark-orange', mode: 'scheme', reverse: false, scale: 'exponential', scheme: 'Oranges', steps: 64 },
      exemplars: { color: 'rgba(255,0,255,0.7)' },
      filterValues: { le: 1e-9 },
      legend: { show: true },
      rowsFrame: { layout: 'auto' },
      showValue: 'never',
      tooltip: { mode: 'single', showColorScale: false, yHistogram: false },
      yAxis: { axisPlacement: 'left', reverse: false, unit: unit },
    };
    $.panel('heatmap', title, unit, [$.q(expr, '{{le}}', heatmap=true)], description, w, h, defaults, [], options),

  row(title):: { type: 'row', title: title, collapsed: false, panels: [], _w:: 24, _h:: 1 },

  // Flows panels left to right; a row, or a panel that does not fit, starts a new line.
  layout(items)::
    local step(state, i) =
      local item = items[i];
      local isRow = item.type == 'row';
      local wrap = isRow || state.x + item._w > 24;
      local x = if wrap then 0 else state.x;
      local y = if wrap then state.y + state.lineH else state.y;
      local lineH = if wrap then 0 else state.lineH;
      {
        out: state.out + [{ id: i + 1, gridPos: { h: item._h, w: item._w, x: x, y: y } } + item],
        x: if isRow then 0 else x + item._w,
        y: if isRow then y + item._h else y,
        lineH: if isRow then 0 else std.max(lineH, item._h),
      };
    std.foldl(step, std.range(0, std.length(items) - 1), { out: [], x: 0, y: 0, lineH: 0 }).out,

  // The query builders that depend on the configuration: `scope` are the labels every
  // selector is limited to by a variable of the same name.
  new(cfg):: {
    local lib = $,
    local given = cfg.registryProberDashboardScopeLabels,
    scope:: given + [l for l in cfg.registryProberGroupLabels if !std.member(given, l)],
    scopeMatchers:: ['%s=~"$%s"' % [l, l] for l in self.scope],

    // A selector of registry_prober_<family> in the chosen scope, e.g. m('runs_total', [T]).
    m(family, matchers=[], suffix='')::
      local all = self.scopeMatchers + matchers;
      'registry_prober_%s%s' % [family, suffix] + (if all == [] then '' else '{%s}' % std.join(', ', all)),

    quantile(q, family, by, matchers, window=lib.rate)::
      'histogram_quantile(%s, sum by (%s) (rate(%s[%s])))' % [
        promql.num(q),
        std.join(', ', by + ['le']),
        self.m(family, matchers, '_bucket'),
        window,
      ],

    ratio(family, by, matchers, good)::
      local b = std.join(', ', by);
      'sum by (%s) (rate(%s[%s]))\n/\nsum by (%s) (rate(%s[%s]))' % [b, self.m(family, matchers + [good]), lib.rate, b, self.m(family, matchers), lib.rate],

    perMinute(family, by, matchers, onlyNonzero=false)::
      'sum by (%s) (rate(%s[%s])) * 60' % [std.join(', ', by), self.m(family, matchers), lib.rate]
      + (if onlyNonzero then ' > 0' else ''),
  },
}
