//! The pages of the guide (`docs/guide/`), included as doc comments so that
//! `cargo test` (`cargo test --doc -p descent`) compiles and runs every Rust code block
//! in them: the guide cannot go stale. Compiled only when collecting doctests.

#[doc = include_str!("../docs/guide/README.md")]
pub struct GuideIndex;

#[doc = include_str!("../docs/guide/getting-started.md")]
pub struct GuideGettingStarted;

#[doc = include_str!("../docs/guide/networks-op-by-op.md")]
pub struct GuideNetworksOpByOp;

#[doc = include_str!("../docs/guide/reading-gradients.md")]
pub struct GuideReadingGradients;

#[doc = include_str!("../docs/guide/snapshot-testing.md")]
pub struct GuideSnapshotTesting;

#[doc = include_str!("../docs/guide/optimisers.md")]
pub struct GuideOptimisers;

#[doc = include_str!("../docs/guide/descent-regimes.md")]
pub struct GuideDescentRegimes;

#[doc = include_str!("../docs/guide/per-sample.md")]
pub struct GuidePerSample;

#[doc = include_str!("../docs/guide/exploding-vanishing.md")]
pub struct GuideExplodingVanishing;

#[doc = include_str!("../docs/guide/performance.md")]
pub struct GuidePerformance;

#[doc = include_str!("../docs/guide/architecture.md")]
pub struct GuideArchitecture;

#[doc = include_str!("../docs/guide/higher-order.md")]
pub struct GuideHigherOrder;

#[doc = include_str!("../docs/guide/modules.md")]
pub struct GuideModules;

#[doc = include_str!("../docs/guide/sequences.md")]
pub struct GuideSequences;

#[doc = include_str!("../docs/guide/distributed.md")]
pub struct GuideDistributed;
