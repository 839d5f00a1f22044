//! What every concern's families are made of: label values (shared names and closed enums),
//! label sets that know their own names and values, families that remember their series so a
//! reload can drop what is no longer configured, and the registrar that registers a family and
//! writes its line of the contract in one call.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Metric, Registry, Unit};

use super::contract::{FamilySpec, LabelSpec, PREFIX};
use crate::config::{Target, ORIGIN};

/// A gauge holding a float (unix timestamps and intervals in seconds).
pub(super) type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// A label value shared by every series of a target, size class or path: one allocation per
/// name instead of one per series (a thousand targets hold hundreds of thousands of series).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Name(Arc<str>);

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name(Arc::from(name))
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, &self.0)
    }
}

/// What the contract says of a label's values: the closed list, or where the open ones come
/// from.
pub(super) trait LabelValues {
    fn spec(label: &'static str) -> LabelSpec;
}

impl LabelValues for Name {
    fn spec(label: &'static str) -> LabelSpec {
        let from = match label {
            "target" => "config: the name of each configured target",
            "size_class" => "config: each size class under sizes (\"default\" for a target without sizes)",
            "path" => "config: \"origin\" (the target's own endpoint), then the name of each configured pull path",
            _ => "config",
        };
        LabelSpec::open(label, from)
    }
}

impl LabelValues for String {
    fn spec(label: &'static str) -> LabelSpec {
        LabelSpec::open(label, "build: the version of the running binary")
    }
}

/// A closed label: its values are the enum's, through `strum` (snake_case), so the contract,
/// the exposition and the docs test read one list.
macro_rules! closed_label {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl prometheus_client::encoding::EncodeLabelValue for $ty {
                fn encode(
                    &self,
                    encoder: &mut prometheus_client::encoding::LabelValueEncoder,
                ) -> std::fmt::Result {
                    std::fmt::Write::write_str(encoder, <&'static str>::from(*self))
                }
            }

            impl $crate::report::metrics::family::LabelValues for $ty {
                fn spec(label: &'static str) -> $crate::report::metrics::contract::LabelSpec {
                    use strum::IntoEnumIterator as _;
                    $crate::report::metrics::contract::LabelSpec::closed(
                        label,
                        <$ty>::iter().map(<&'static str>::from).collect(),
                    )
                }
            }
        )+
    };
}
pub(super) use closed_label;

closed_label!(
    crate::outcome::Step,
    crate::outcome::Reason,
    crate::outcome::MountOutcome,
    Outcome,
);

/// `result` of a run, a step, a sweep or a configuration reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub(super) enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub(super) fn of(success: bool) -> Outcome {
        if success {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// What configured things a series belongs to: its target, and its size class and path when
/// it has those labels.
pub(super) trait Scope {
    fn target(&self) -> &str;
    fn size_class(&self) -> Option<&str> {
        None
    }
    fn path(&self) -> Option<&str> {
        None
    }
}

/// A label set that can say its labels, for the contract.
pub(super) trait LabelSet {
    fn spec() -> Vec<LabelSpec>;
}

/// The label set of a metric without labels.
pub(super) struct NoLabels;

impl LabelSet for NoLabels {
    fn spec() -> Vec<LabelSpec> {
        Vec::new()
    }
}

/// Label sets; field order is label order in the output. A `[size_class]` or `[path]` after a
/// set makes those labels part of its `Scope`, which a reload judges it by; a set without a
/// `target` field is marked `global` and has no scope.
macro_rules! label_sets {
    ($($name:ident { $($field:ident: $ty:ty),+ } $([$($scope:ident),+])?;)+) => {
        $(
            #[derive(Clone, Debug, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
            pub(super) struct $name {
                $(pub(super) $field: $ty,)+
            }

            impl $crate::report::metrics::family::Scope for $name {
                fn target(&self) -> &str {
                    &self.target
                }
                $($(
                    fn $scope(&self) -> Option<&str> {
                        Some(&self.$scope)
                    }
                )+)?
            }

            impl $crate::report::metrics::family::LabelSet for $name {
                fn spec() -> Vec<$crate::report::metrics::contract::LabelSpec> {
                    vec![$(<$ty as $crate::report::metrics::family::LabelValues>::spec(stringify!($field))),+]
                }
            }
        )+
    };
    (global $($name:ident { $($field:ident: $ty:ty),+ };)+) => {
        $(
            #[derive(Clone, Debug, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
            pub(super) struct $name {
                $(pub(super) $field: $ty,)+
            }

            impl $crate::report::metrics::family::LabelSet for $name {
                fn spec() -> Vec<$crate::report::metrics::contract::LabelSpec> {
                    vec![$(<$ty as $crate::report::metrics::family::LabelValues>::spec(stringify!($field))),+]
                }
            }
        )+
    };
}
pub(super) use label_sets;

/// A family that remembers the label sets it created, so a reload can remove the series of
/// what is no longer configured: prometheus-client's `Family` removes a series but cannot list
/// them. The record's lock is held while a series is created or removed, so the two never
/// disagree.
#[derive(Debug)]
pub(super) struct Tracked<L, M> {
    family: Family<L, M, fn() -> M>,
    created: Arc<Mutex<HashSet<L>>>,
}

impl<L, M> Clone for Tracked<L, M> {
    fn clone(&self) -> Self {
        Tracked {
            family: self.family.clone(),
            created: Arc::clone(&self.created),
        }
    }
}

impl<L: Clone + Hash + Eq + Scope, M> Tracked<L, M> {
    /// A family whose series are made by `new` (histograms need their buckets).
    pub(super) fn new(new: fn() -> M) -> Self {
        Tracked {
            family: Family::new_with_constructor(new),
            created: Arc::default(),
        }
    }

    fn record(&self) -> MutexGuard<'_, HashSet<L>> {
        // A panic while the lock was held cannot leave the set half-updated (an insert or a
        // remove), so a poisoned record is still right.
        self.created.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f` to the series of `labels`, creating it at zero if needed.
    pub(super) fn with(&self, labels: L, f: impl FnOnce(&M)) {
        let mut created = self.record();
        f(&self.family.get_or_create(&labels));
        created.insert(labels);
    }

    /// Creates the series of `labels` at zero, or leaves it as it is.
    pub(super) fn touch(&self, labels: L) {
        self.with(labels, |_| {});
    }

    pub(super) fn remove(&self, labels: &L) {
        let mut created = self.record();
        created.remove(labels);
        self.family.remove(labels);
    }

    /// Removes every series whose labels `keep` refuses.
    pub(super) fn retain(&self, keep: impl Fn(&dyn Scope) -> bool) {
        let mut created = self.record();
        created.retain(|labels| {
            let kept = keep(labels);
            if !kept {
                self.family.remove(labels);
            }
            kept
        });
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, Counter> {
    pub(super) fn counter() -> Self {
        Tracked::new(Counter::default)
    }

    pub(super) fn inc_by(&self, labels: L, n: u64) {
        self.with(labels, |c| {
            c.inc_by(n);
        });
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, FloatGauge> {
    pub(super) fn float_gauge() -> Self {
        Tracked::new(FloatGauge::default)
    }

    pub(super) fn set(&self, labels: L, value: f64) {
        self.with(labels, |g| {
            g.set(value);
        });
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, Gauge> {
    pub(super) fn gauge() -> Self {
        Tracked::new(Gauge::default)
    }
}

impl<L: Clone + Hash + Eq + Scope> Tracked<L, Histogram> {
    pub(super) fn observe(&self, labels: L, value: f64) {
        self.with(labels, |h| h.observe(value));
    }
}

/// The configuration a reload keeps, to judge series by.
pub(super) struct Configured<'a> {
    targets: HashMap<&'a str, &'a Target>,
}

impl<'a> Configured<'a> {
    pub(super) fn new(targets: &'a [Target]) -> Self {
        Configured {
            targets: targets.iter().map(|t| (t.name.as_str(), t)).collect(),
        }
    }

    /// The target of a series, when it, and the size class and path the series names, are
    /// still configured.
    pub(super) fn target_of(&self, labels: &dyn Scope) -> Option<&'a Target> {
        let target = *self.targets.get(labels.target())?;
        if let Some(class) = labels.size_class() {
            target.sizes.iter().find(|c| c.name == class)?;
        }
        if let Some(path) = labels.path() {
            if path != ORIGIN {
                target.paths.iter().find(|p| p.name == path)?;
            }
        }
        Some(target)
    }

    /// Whether the series still belongs to something configured.
    pub(super) fn keeps(&self, labels: &dyn Scope) -> bool {
        self.target_of(labels).is_some()
    }
}

/// Registers families under the `registry_prober` prefix and writes the contract as it goes:
/// the one place a family gets its name, HELP, type, unit and labels.
pub(super) struct Families<'a> {
    registry: &'a mut Registry,
    specs: Vec<FamilySpec>,
}

impl<'a> Families<'a> {
    pub(super) fn new(registry: &'a mut Registry) -> Families<'a> {
        Families {
            registry: registry.sub_registry_with_prefix(PREFIX),
            specs: Vec::new(),
        }
    }

    /// Registers a family whose labels are `L` (`NoLabels` for a single series).
    pub(super) fn add<L: LabelSet, M: Metric + TypedMetric>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: M,
    ) {
        self.specs.push(FamilySpec::new(
            name,
            help,
            M::TYPE,
            unit.as_ref(),
            L::spec(),
        ));
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, metric),
            None => self.registry.register(name, help, metric),
        }
    }

    /// Registers a tracked family.
    pub(super) fn tracked<L, M>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        family: &Tracked<L, M>,
    ) where
        L: LabelSet + Clone + Hash + Eq + Scope + prometheus_client::encoding::EncodeLabelSet,
        L: fmt::Debug + Send + Sync + 'static,
        M: prometheus_client::encoding::EncodeMetric + TypedMetric + fmt::Debug + Send + Sync,
        M: 'static,
    {
        self.add::<L, _>(name, help, unit, family.family.clone());
    }

    pub(super) fn finish(self) -> Vec<FamilySpec> {
        self.specs
    }
}

pub(super) fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
