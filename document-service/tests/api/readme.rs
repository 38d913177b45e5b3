//! The README's settings table and subcommands against the clap definitions
//! of both binaries: a setting added, renamed or given another default in the
//! code fails here until the README says so too (and the other way round).

use std::collections::BTreeMap;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The backticked words of a table cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Variable → default (`None` when the README gives none) from the table
/// under "## Settings".
fn documented() -> BTreeMap<String, Option<String>> {
    let text = readme();
    let section = text
        .split("\n## Settings")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Settings section");
    let mut settings = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let names = ticked(cells[0]);
        let defaults = ticked(cells[1]);
        for (i, name) in names.iter().enumerate() {
            settings.insert(name.clone(), defaults.get(i).cloned());
        }
    }
    settings
}

/// Variable → default from the clap definitions, subcommands included.
fn defined() -> BTreeMap<String, Option<String>> {
    let mut settings = BTreeMap::new();
    let mut commands = vec![
        auth_service::cli::command(),
        document_service::cli::command(),
    ];
    while let Some(command) = commands.pop() {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                let default = arg
                    .get_default_values()
                    .first()
                    .map(|d| d.to_string_lossy().into_owned());
                settings.insert(env.to_string_lossy().into_owned(), default);
            }
        }
        commands.extend(command.get_subcommands().cloned());
    }
    settings
}

#[test]
fn the_settings_table_matches_the_code() {
    let documented = documented();
    let defined = defined();
    // Read by the logging setup, not by clap.
    let outside_clap = ["RUST_LOG"];
    for (name, default) in &defined {
        let Some(readme_default) = documented.get(name) else {
            panic!("{name} is a setting but is missing from the README's table");
        };
        assert_eq!(
            readme_default, default,
            "{name}: the README's default differs from the code's"
        );
    }
    for name in documented.keys() {
        assert!(
            defined.contains_key(name) || outside_clap.contains(&name.as_str()),
            "the README documents {name}, which no binary reads"
        );
    }
}

#[test]
fn the_subcommands_match_the_code() {
    let text = readme();
    let line = text
        .split("Subcommands: ")
        .nth(1)
        .and_then(|s| s.split(". ").next())
        .expect("a Subcommands line")
        .replace('\n', " ");
    for (binary, command) in [
        ("auth-service", auth_service::cli::command()),
        ("document-service", document_service::cli::command()),
    ] {
        let listed = line
            .split(&format!("`{binary} ["))
            .nth(1)
            .and_then(|s| s.split("]`").next())
            .unwrap_or_else(|| panic!("{binary} is missing from the Subcommands line"));
        let mut documented: Vec<&str> = listed
            .split('|')
            .filter_map(|s| s.split_whitespace().next())
            .collect();
        let mut defined: Vec<&str> = command
            .get_subcommands()
            .map(clap::Command::get_name)
            .filter(|n| *n != "help")
            .collect();
        documented.sort_unstable();
        defined.sort_unstable();
        assert_eq!(documented, defined, "{binary}'s subcommands");
        // Every flag of a subcommand is named on the line.
        for sub in command.get_subcommands() {
            for arg in sub.get_arguments().filter_map(clap::Arg::get_long) {
                if arg != "help" {
                    assert!(
                        listed.contains(&format!("--{arg}")),
                        "{binary} {} --{arg} is missing from the Subcommands line",
                        sub.get_name()
                    );
                }
            }
        }
    }
}
