//! rbd's command line as clap definitions: global options, commands, and their options.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "rbd",
    about = "Ceph's rbd command line, served by Shale",
    disable_version_flag = true
)]
pub(crate) struct RbdCli {
    /// Pool name
    #[arg(short = 'p', long, global = true)]
    pub(crate) pool: Option<String>,
    /// Namespace name (Shale has none; only the empty namespace is accepted)
    #[arg(long, global = true)]
    pub(crate) namespace: Option<String>,
    /// Image name
    #[arg(long, global = true)]
    pub(crate) image: Option<String>,
    /// Snapshot name
    #[arg(long, global = true)]
    pub(crate) snap: Option<String>,
    /// Client id (accepted; Shale has no cephx)
    #[arg(long = "id", visible_alias = "user", global = true)]
    pub(crate) id: Option<String>,
    /// Client name (accepted)
    #[arg(short = 'n', long = "name", global = true)]
    pub(crate) name: Option<String>,
    /// ceph.conf to read `shale_*` settings from (default: $CEPH_CONF, /etc/ceph/ceph.conf)
    #[arg(short = 'c', long = "conf", global = true)]
    pub(crate) conf: Option<String>,
    /// Cluster name (accepted)
    #[arg(long, global = true)]
    pub(crate) cluster: Option<String>,
    /// Monitor addresses (accepted; Shale has no monitors)
    #[arg(
        short = 'm',
        long = "mon_host",
        visible_alias = "mon-host",
        global = true
    )]
    pub(crate) mon_host: Option<String>,
    /// Keyring (accepted)
    #[arg(short = 'k', long, global = true)]
    pub(crate) keyring: Option<String>,
    /// Secret key file (accepted)
    #[arg(short = 'K', long, global = true)]
    pub(crate) keyfile: Option<String>,
    /// Output format
    #[arg(long, value_enum, global = true)]
    pub(crate) format: Option<Fmt>,
    /// Indent JSON output
    #[arg(long, global = true)]
    pub(crate) pretty_format: bool,
    /// Do not print progress
    #[arg(long, global = true)]
    pub(crate) no_progress: bool,
    /// Print the version (in `rbd -v`'s form, naming the Ceph release whose syntax this follows)
    #[arg(short = 'v', long = "version")]
    pub(crate) version: bool,
    #[command(subcommand)]
    pub(crate) cmd: Option<Cmd>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Fmt {
    Plain,
    Json,
}

/// Options shared by the commands that create an image.
#[derive(Args, Debug, Default)]
pub(crate) struct CreateOpts {
    /// Image format (only 2)
    #[arg(long)]
    pub(crate) image_format: Option<u8>,
    /// Image features (layering, exclusive-lock, object-map, fast-diff, deep-flatten)
    #[arg(long = "image-feature", value_delimiter = ',')]
    pub(crate) image_feature: Vec<String>,
    /// Object size as a power of two
    #[arg(long)]
    pub(crate) order: Option<u8>,
    /// Object size in B/K/M
    #[arg(long)]
    pub(crate) object_size: Option<String>,
    /// Stripe unit in B/K/M (validated; Shale does not stripe)
    #[arg(long)]
    pub(crate) stripe_unit: Option<String>,
    /// Stripe count (validated; Shale does not stripe)
    #[arg(long)]
    pub(crate) stripe_count: Option<u64>,
    /// Data pool (not supported)
    #[arg(long)]
    pub(crate) data_pool: Option<String>,
    /// Shared image (accepted)
    #[arg(long)]
    pub(crate) image_shared: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Create an empty image
    Create {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// Image size (in M/G/T) [default unit: M]
        #[arg(short = 's', long, allow_hyphen_values = true)]
        size: Option<String>,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// List rbd images
    #[command(visible_alias = "list")]
    Ls {
        pool_spec: Option<String>,
        /// Long listing format
        #[arg(short = 'l', long)]
        long: bool,
        /// Accepted (Shale has no trash)
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Show information about an image or snapshot
    Info {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Delete an image
    #[command(visible_alias = "remove")]
    Rm {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Rename an image within its pool
    #[command(visible_alias = "mv")]
    Rename {
        /// Source spec: [pool/]image[@snap]
        src: Option<String>,
        /// Destination spec: [pool/]image[@snap]
        dst: Option<String>,
        #[arg(long)]
        dest_pool: Option<String>,
        #[arg(long)]
        dest: Option<String>,
    },
    /// Resize (expand or shrink) an image
    Resize {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        #[arg(short = 's', long, allow_hyphen_values = true)]
        size: Option<String>,
        /// Permit shrinking
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Snapshot commands
    Snap {
        #[command(subcommand)]
        cmd: SnapCmd,
    },
    /// Clone a snapshot into a copy-on-write child image
    Clone {
        parent: Option<String>,
        child: Option<String>,
        #[arg(long)]
        dest_pool: Option<String>,
        #[arg(long)]
        dest: Option<String>,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// Fill a clone with its parent's data and detach it
    Flatten {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Display the children of an image or of one of its snapshots
    Children {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// Accepted (Shale has no trash)
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Show disk usage of images and snapshots
    #[command(visible_alias = "disk-usage")]
    Du {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// Accepted (Shale's usage is always exact)
        #[arg(long)]
        exact: bool,
    },
    /// Print the extents that differ since a snapshot, or since creation
    Diff {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        #[arg(long)]
        from_snap: Option<String>,
        #[arg(long)]
        whole_object: bool,
    },
    /// Export an image or snapshot to a file (`-` for stdout)
    Export {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// File, or - for stdin/stdout
        path: Option<String>,
        /// Only format 1 (raw) is supported
        #[arg(long)]
        export_format: Option<u8>,
    },
    /// Import an image from a raw file (`-` for stdin)
    Import {
        /// File, or - for stdin/stdout
        path: Option<String>,
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        #[arg(long)]
        dest_pool: Option<String>,
        #[arg(long)]
        dest: Option<String>,
        /// Only format 1 (raw) is supported
        #[arg(long)]
        export_format: Option<u8>,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// Export the changes since --from-snap (or all data) as an "rbd diff v1" stream
    ExportDiff {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// File, or - for stdin/stdout
        path: Option<String>,
        #[arg(long)]
        from_snap: Option<String>,
        #[arg(long)]
        whole_object: bool,
    },
    /// Apply an "rbd diff v1" stream to an image
    ImportDiff {
        /// File, or - for stdin/stdout
        path: Option<String>,
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Advisory lock commands
    Lock {
        #[command(subcommand)]
        cmd: LockCmd,
    },
    /// Show the status of an image
    Status {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Simple benchmark
    Bench(BenchOpts),
    /// Pool commands
    Pool {
        #[command(subcommand)]
        cmd: PoolCmd,
    },
    /// Image metadata commands
    ImageMeta {
        #[command(subcommand)]
        cmd: MetaCmd,
    },
    /// Enable or disable image features
    Feature {
        #[command(subcommand)]
        cmd: FeatureCmd,
    },
    /// Copy an image (or snapshot) to a new image
    #[command(visible_alias = "copy")]
    Cp {
        /// Source spec: [pool/]image[@snap]
        src: Option<String>,
        /// Destination spec: [pool/]image[@snap]
        dst: Option<String>,
        #[arg(long)]
        dest_pool: Option<String>,
        #[arg(long)]
        dest: Option<String>,
    },
    /// Any other command of Ceph's rbd (answered with why Shale does not provide it)
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Subcommand, Debug)]
pub(crate) enum PoolCmd {
    /// Initialize a pool for use by RBD (nothing to do on Shale; the pool must exist)
    Init {
        pool: Option<String>,
        /// Accepted
        #[arg(long)]
        force: bool,
    },
    /// Display pool statistics
    Stats { pool: Option<String> },
}

#[derive(Subcommand, Debug)]
pub(crate) enum MetaCmd {
    /// List image metadata keys with values
    #[command(visible_alias = "ls")]
    List {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Get the value of a key
    Get {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        key: Option<String>,
    },
    /// Set a key to a value
    Set {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        key: Option<String>,
        value: Option<String>,
    },
    /// Remove a key
    #[command(visible_alias = "rm")]
    Remove {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum FeatureCmd {
    /// Enable features (exclusive-lock, object-map, fast-diff)
    Enable {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        features: Vec<String>,
    },
    /// Disable features (exclusive-lock, object-map, fast-diff, deep-flatten)
    Disable {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        features: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum LimitCmd {
    /// Limit the number of snapshots
    Set {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Remove the snapshot limit
    Clear {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct BenchOpts {
    pub(crate) spec: Option<String>,
    /// read, write, or readwrite (rw)
    #[arg(long)]
    pub(crate) io_type: Option<String>,
    #[arg(long, default_value = "4K")]
    pub(crate) io_size: String,
    #[arg(long, default_value_t = 16)]
    pub(crate) io_threads: usize,
    #[arg(long, default_value = "1G")]
    pub(crate) io_total: String,
    /// rand, seq, or full-seq
    #[arg(long, default_value = "seq")]
    pub(crate) io_pattern: String,
    #[arg(long, default_value_t = 50)]
    pub(crate) rw_mix_read: u8,
}

#[derive(Subcommand, Debug)]
pub(crate) enum SnapCmd {
    /// Create a snapshot
    #[command(visible_alias = "add")]
    Create {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// Accepted (Shale has no quiesce hooks)
        #[arg(long)]
        skip_quiesce: bool,
        /// Accepted (Shale has no quiesce hooks)
        #[arg(long)]
        ignore_quiesce_error: bool,
    },
    /// Dump the list of snapshots
    #[command(visible_alias = "list")]
    Ls {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// Accepted (Shale has only user snapshots)
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Delete a snapshot
    #[command(visible_alias = "remove")]
    Rm {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        /// Accepted
        #[arg(long)]
        force: bool,
    },
    /// Roll the image back to a snapshot
    #[command(visible_alias = "revert")]
    Rollback {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Prevent a snapshot from being deleted
    Protect {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Allow a snapshot to be deleted
    Unprotect {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Delete all unprotected snapshots
    Purge {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Rename a snapshot
    Rename {
        /// Source spec: [pool/]image[@snap]
        src: Option<String>,
        /// Destination spec: [pool/]image[@snap]
        dst: Option<String>,
    },
    /// Snapshot limit commands
    Limit {
        #[command(subcommand)]
        cmd: LimitCmd,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum LockCmd {
    /// Show locks held on an image
    #[command(visible_alias = "list")]
    Ls {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
    },
    /// Take a lock on an image
    Add {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        lock_id: Option<String>,
        /// Shared lock with this tag
        #[arg(long)]
        shared: Option<String>,
    },
    /// Release a lock on an image
    #[command(visible_alias = "remove")]
    Rm {
        /// Image spec: [pool/]image[@snap]
        spec: Option<String>,
        lock_id: Option<String>,
        locker: Option<String>,
    },
}
