//! Metric families as components report them. Each component that counts something (the
//! proxy's shadows, each sink, the aggregator's consumer) implements [`MetricsSource`] on its own
//! counters, so a metric name greps to the one file that defines it; `admin::metrics` renders
//! them all in the Prometheus text format at scrape time.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One metric family reported by a [`MetricsSource`]: a name, its help text and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    /// (labels, value). Label values are escaped when written.
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

impl MetricFamily {
    pub fn gauge(name: &str, help: &str, value: f64) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind: MetricKind::Gauge,
            samples: vec![(Vec::new(), value)],
        }
    }

    pub fn counter(name: &str, help: &str) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind: MetricKind::Counter,
            samples: Vec::new(),
        }
    }

    /// Adds one sample with labels.
    pub fn with(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.samples.push((
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        ));
        self
    }
}

/// Something that reports extra metrics at scrape time. Called on the admin server's task, so it
/// should read atomics, not take long locks. Closures returning `Vec<MetricFamily>` implement it.
pub trait MetricsSource: Send + Sync {
    fn collect(&self) -> Vec<MetricFamily>;
}

impl<F> MetricsSource for F
where
    F: Fn() -> Vec<MetricFamily> + Send + Sync,
{
    fn collect(&self) -> Vec<MetricFamily> {
        self()
    }
}

/// Name of the per-sink counter every sink reports, labels `sink` and `outcome` (DESIGN.md,
/// "Metrics"): one name shared by several sources, merged under one header when rendered.
pub const SINK_EVENTS_TOTAL: &str = "shadowdiff_sink_events_total";

/// A counter family `shadowdiff_sink_events_total{sink, outcome}` from one sink's outcome counts.
pub fn sink_events(
    sink: &str,
    outcomes: impl IntoIterator<Item = (&'static str, u64)>,
) -> MetricFamily {
    let mut m = MetricFamily::counter(SINK_EVENTS_TOTAL, "Events per sink and outcome");
    for (outcome, n) in outcomes {
        m = m.with(&[("sink", sink), ("outcome", outcome)], n as f64);
    }
    m
}
