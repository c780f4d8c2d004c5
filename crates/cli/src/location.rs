//! Locations (UKAI): `location create|list|delete` (registered stores), `location
//! add|rm|ls` (an image's data placement and sync status), `sync`, `errors`, `stats`.

use clap::Subcommand;
use serde_json::json;
use shale_error::{err, Result};
use shale_image::iostats::OpStats;
use shale_image::size::{format_size, parse_size};
use shale_image::{Cluster, ImageSpec, LocationMode};

use crate::progress;

#[derive(Subcommand, Debug)]
pub enum LocationCmd {
    /// Register a location (a store every host reaches by the same name):
    /// `shale location create dc2 s3://bucket/prefix`. Endpoints and keys are host settings:
    /// `[location.dc2] endpoint = ..., access_key = ..., secret_key = ...`
    Create { name: String, url: String },
    /// List registered locations (and the images using them)
    List,
    /// Unregister a location (refused while an image uses it)
    Delete { name: String },
    /// Place an image's data at a location too: it starts out of sync and fills in the
    /// background (at the image's writer) or with `shale sync`
    Add {
        spec: String,
        name: String,
        /// sync: a flush waits for it (durability = backend); async: filled in the background
        #[arg(long, default_value = "sync")]
        mode: String,
    },
    /// Remove a location from an image (refused while it holds the only in-sync copy of
    /// anything); --force drops an unreachable one when every object has another copy
    #[command(alias = "remove")]
    Rm {
        spec: String,
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Sync status of an image per location
    Ls { spec: String },
}

fn image_spec(s: &str, dp: &str) -> Result<ImageSpec> {
    let sp = ImageSpec::parse(s, dp)?;
    if sp.snap.is_some() {
        return Err(err!(
            Invalid,
            "{s}: give an image (pool/image), not a snapshot: locations hold the image with its snapshots"
        ));
    }
    Ok(sp)
}

pub fn location(c: &Cluster, dp: &str, cmd: &LocationCmd, json_out: bool) -> Result<()> {
    match cmd {
        LocationCmd::Create { name, url } => {
            c.location_create(name, url)?;
            if json_out {
                crate::print_json(json!({"name": name, "url": url}));
            }
        }
        LocationCmd::List => {
            let home = c.store().url();
            let mut rows = vec![json!({"name": shale_image::HOME, "url": home,
                                        "images": c.location_users(shale_image::HOME)?})];
            for e in c.location_list()? {
                rows.push(json!({"name": e.name, "url": e.url, "created": e.created,
                                 "images": c.location_users(&e.name)?}));
            }
            if json_out {
                crate::print_json(json!(rows));
            } else {
                outln!("{:<16} {:<48} IMAGES", "NAME", "URL");
                for r in rows {
                    outln!(
                        "{:<16} {:<48} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["url"].as_str().unwrap_or(""),
                        r["images"].as_array().map(|a| a.len()).unwrap_or(0)
                    );
                }
            }
        }
        LocationCmd::Delete { name } => c.location_delete(name)?,
        LocationCmd::Add { spec, name, mode } => {
            let sp = image_spec(spec, dp)?;
            let mode = LocationMode::parse(mode)?;
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            img.location_add(name, mode)?;
            img.close()?;
            if !json_out {
                eprintln!(
                    "location {name} added to {sp} ({}); it fills in the background at the image's writer, or now with `shale sync {sp} --location {name}`",
                    mode.as_str()
                );
            }
        }
        LocationCmd::Rm { spec, name, force } => {
            let sp = image_spec(spec, dp)?;
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            img.location_rm(name, *force)?;
            img.close()?;
        }
        LocationCmd::Ls { spec } => {
            let sp = image_spec(spec, dp)?;
            let img = c.open_image(&sp.pool, &sp.image, true)?;
            let rep = img.location_report()?;
            if json_out {
                crate::print_json(serde_json::to_value(&rep).unwrap_or_default());
            } else {
                outln!(
                    "{:<12} {:<6} {:<9} {:>9} {:>10} {:>9} {:>10} {:>8} {:>6}  LAST ERROR",
                    "LOCATION",
                    "MODE",
                    "STATE",
                    "IN SYNC",
                    "BYTES",
                    "BEHIND",
                    "BYTES",
                    "LAG",
                    "HELD"
                );
                for r in rep {
                    outln!(
                        "{:<12} {:<6} {:<9} {:>9} {:>10} {:>9} {:>10} {:>7.1}s {:>6}  {}",
                        r.name,
                        r.mode.as_str(),
                        r.state,
                        r.objects_in_sync,
                        format_size(r.bytes_in_sync),
                        r.objects_behind,
                        format_size(r.bytes_behind),
                        r.lag_seconds,
                        r.deletes_held,
                        r.last_error.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

/// `shale sync SPEC [--location NAME] [--offset N --length N]`.
pub fn sync(
    c: &Cluster,
    dp: &str,
    spec: &str,
    location: Option<&str>,
    offset: Option<&str>,
    length: Option<&str>,
    json_out: bool,
) -> Result<()> {
    let sp = image_spec(spec, dp)?;
    let range = match (offset, length) {
        (None, None) => None,
        (Some(o), Some(l)) => Some((parse_size(o, 1)?, parse_size(l, 1)?)),
        _ => {
            return Err(err!(
                Invalid,
                "give both --offset and --length (bytes, or with a unit: 4M), or neither"
            ))
        }
    };
    let img = c.open_image(&sp.pool, &sp.image, false)?;
    let bar = progress::bar("Syncing", 0);
    let copied = img.sync(location, range, &mut |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    });
    let copied = match copied {
        Ok(n) => {
            bar.finish_and_clear();
            n
        }
        Err(e) => {
            drop(bar);
            return Err(e);
        }
    };
    let rep = img.location_report()?;
    img.close()?;
    if json_out {
        crate::print_json(json!({"bytes_copied": copied,
                                 "locations": serde_json::to_value(&rep).unwrap_or_default()}));
    } else {
        outln!("copied {}", format_size(copied));
        for r in rep {
            outln!(
                "{}: {} ({} objects behind)",
                r.name,
                r.state,
                r.objects_behind
            );
        }
    }
    Ok(())
}

/// `shale errors`: locations this host cannot reach (UKAI's get_error_state).
pub fn errors(c: &Cluster, json_out: bool) -> Result<bool> {
    let probes = c.location_probe()?;
    let bad: Vec<_> = probes.iter().filter(|p| !p.reachable).collect();
    if json_out {
        crate::print_json(json!({
            "locations": serde_json::to_value(&probes).unwrap_or_default(),
            "unreachable": bad.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
        }));
    } else if bad.is_empty() {
        outln!("every location is reachable ({})", probes.len());
    } else {
        for p in &bad {
            outln!(
                "{}\t{}\t{}",
                p.name,
                p.url,
                p.error.clone().unwrap_or_default()
            );
        }
    }
    Ok(bad.is_empty())
}

fn op_json(o: &OpStats) -> serde_json::Value {
    json!({
        "ops": o.ops, "bytes": o.bytes, "errors": o.errors,
        "latency_us_mean": o.mean_latency_us(),
        "latency_us_p50": o.quantile_us(0.5), "latency_us_p99": o.quantile_us(0.99),
        "latency_us_sum": o.latency_us_sum, "latency_buckets": o.latency_buckets,
    })
}

/// `shale stats SPEC`: I/O figures the image's writer stored, and per location bytes and lag.
pub fn stats(c: &Cluster, dp: &str, spec: &str, json_out: bool) -> Result<()> {
    let sp = image_spec(spec, dp)?;
    let img = c.open_image(&sp.pool, &sp.image, true)?;
    let st = c.stored_stats(&sp.pool, img.id())?;
    let rep = img.location_report()?;
    let v = json!({
        "image": sp.to_string(),
        "writer": st.owner,
        "updated_ms": st.updated_ms,
        "read": op_json(&st.io.read),
        "write": op_json(&st.io.write),
        "discard": op_json(&st.io.discard),
        "flush": op_json(&st.io.flush),
        "pending_segments": st.pending_segments,
        "pending_bytes": st.pending_bytes,
        "segments_written": st.segments_written,
        "bytes_to_store": st.bytes_to_store,
        "locations": rep.iter().map(|r| json!({
            "name": r.name, "mode": r.mode.as_str(), "state": r.state,
            "bytes_written": r.bytes_written, "bytes_read": r.bytes_read,
            "lag_seconds": r.lag_seconds, "objects_behind": r.objects_behind,
            "bytes_behind": r.bytes_behind,
        })).collect::<Vec<_>>(),
    });
    if json_out {
        crate::print_json(v);
        return Ok(());
    }
    outln!(
        "{}  (writer: {})",
        sp,
        if st.owner.is_empty() {
            "none yet"
        } else {
            &st.owner
        }
    );
    outln!(
        "{:<8} {:>10} {:>10} {:>8} {:>10} {:>8} {:>8}",
        "OP",
        "OPS",
        "BYTES",
        "ERRORS",
        "MEAN µs",
        "P50",
        "P99"
    );
    for (n, o) in [
        ("read", &st.io.read),
        ("write", &st.io.write),
        ("discard", &st.io.discard),
        ("flush", &st.io.flush),
    ] {
        outln!(
            "{:<8} {:>10} {:>10} {:>8} {:>10.1} {:>8} {:>8}",
            n,
            o.ops,
            format_size(o.bytes),
            o.errors,
            o.mean_latency_us(),
            o.quantile_us(0.5),
            o.quantile_us(0.99)
        );
    }
    outln!(
        "{:<12} {:>12} {:>12} {:>8}",
        "LOCATION",
        "WRITTEN",
        "READ",
        "LAG"
    );
    for r in rep {
        outln!(
            "{:<12} {:>12} {:>12} {:>7.1}s",
            r.name,
            format_size(r.bytes_written),
            format_size(r.bytes_read),
            r.lag_seconds
        );
    }
    Ok(())
}
