// The panel types our dashboards may use, each with the options and custom field config types
// that Grafana's own panel plugins declare in @grafana/schema (raw/composable/<panel>/panelcfg).
// `generate` turns this into a schema and merge.mjs attaches it to the Dashboard's Panel.
// To allow another panel type, add it here (key = Grafana's panel plugin id).
import type * as heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** A panel type's `options` and `fieldConfig.defaults.custom` (absent: the panel has none). */
export interface PanelConfigs {
  heatmap: { options: heatmap.Options; custom: heatmap.FieldConfig };
  stat: { options: stat.Options };
  timeseries: { options: timeseries.Options; custom: timeseries.FieldConfig };
}
