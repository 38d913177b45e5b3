//! What the deployment files' tests (compose.rs, kubernetes.rs) check the
//! same way against the code: the binaries and their subcommands, the
//! settings each binary reads.

use yaml_rust2::Yaml;

/// The clap command of a binary that `file` runs.
pub(crate) fn binary(file: &str, name: &str) -> clap::Command {
    match name {
        "auth-service" => auth_service::cli::command(),
        "document-service" => document_service::cli::command(),
        other => panic!("{file} runs {other}, which is not one of our binaries"),
    }
}

/// The strings of a YAML list (none when it is not one).
pub(crate) fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that `words` after the binary are its subcommands; returns the
/// binary's command.
pub(crate) fn command_of(
    file: &str,
    who: &str,
    binary_name: &str,
    words: &[String],
) -> clap::Command {
    let cli = binary(file, binary_name);
    for sub in words {
        assert!(
            cli.find_subcommand(sub).is_some(),
            "{who}: `{binary_name} {sub}` is not a subcommand"
        );
    }
    cli
}

/// The environment variables a binary reads as settings.
pub(crate) fn settings(cli: &clap::Command) -> Vec<String> {
    cli.get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}
