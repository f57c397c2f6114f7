//! `shadowdiff check-config`: the same validation `proxy` runs, every problem at once, and a
//! summary of what the file sets.

use super::print_problems;
use crate::config::{Config, Upstream};
use crate::ingest::inbound::budget;
use std::path::Path;
use std::process::ExitCode;

pub(super) fn run(file: &Path) -> ExitCode {
    match Config::check_file(file) {
        Ok((cfg, rules)) => {
            let show = |u: &Option<Upstream>| {
                u.as_ref()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "(not set: give --primary/--candidate)".into())
            };
            println!("{}: ok", file.display());
            println!("  listen     {}", cfg.listen);
            println!("  primary    {}", show(&cfg.primary));
            println!("  candidate  {}", show(&cfg.candidate));
            if let Some(s) = &cfg.secondary {
                println!("  secondary  {s}");
            }
            println!(
                "  rules      {} rule(s), {} endpoint template(s){}",
                rules.rules.len(),
                rules.endpoints.len(),
                cfg.rules_path()
                    .map(|p| format!(" from {}", p.display()))
                    .unwrap_or_default()
            );
            println!(
                "  shadow     methods {:?}, {} route(s), sample {}, timeout {:?}, max_in_flight {}",
                cfg.shadow
                    .methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>(),
                cfg.shadow.routes.len(),
                cfg.shadow.sample,
                cfg.shadow.timeout,
                cfg.shadow.max_in_flight
            );
            let l = &cfg.limits;
            println!(
                "  limits     header_read_timeout {:?}, idle_timeout {:?}, max_connections {}, max_header_bytes {}",
                l.header_read_timeout,
                l.idle_timeout,
                l.max_connections,
                crate::units::format_size(l.max_header_bytes as u64)
            );
            let shadows =
                budget::shadow_connections(cfg.shadow.max_in_flight, cfg.secondary.is_some());
            println!(
                "  descriptors {} needed by these caps (RLIMIT_NOFILE, systemd LimitNOFILE)",
                budget::plan(None, l.max_connections, shadows).needed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_problems(&e);
            ExitCode::from(64)
        }
    }
}
