//! No container engine runs here, so docker-compose.yml is checked against
//! the code instead: every service's command is a real binary and
//! subcommand, every environment variable is a setting the binary reads,
//! every published port is the one it listens on, every health check and
//! dependency is real. The file cannot rot unseen.

use yaml_rust2::{Yaml, YamlLoader};

fn compose() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// The clap command of a binary named in the compose file.
fn binary(name: &str) -> clap::Command {
    match name {
        "auth-service" => auth_service::cli::command(),
        "document-service" => document_service::cli::command(),
        other => panic!("docker-compose.yml runs {other}, which is not one of our binaries"),
    }
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn docker_compose_matches_the_code() {
    let doc = compose();
    let services = doc["services"].as_hash().expect("services");
    let names: Vec<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for needed in ["postgres", "auth-service", "document-service"] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} is missing from docker-compose.yml"
        );
    }
    assert!(
        doc["services"]["postgres"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:16")
    );
    assert!(
        doc["volumes"].as_hash().is_some_and(|v| !v.is_empty()),
        "PostgreSQL keeps a named volume"
    );

    for (name, service) in services {
        let name = name.as_str().unwrap();
        if name == "postgres" {
            continue;
        }
        assert_eq!(
            service["build"].as_str(),
            Some("."),
            "{name} is built from the Dockerfile"
        );
        let command = strings(&service["command"]);
        let cli = binary(&command[0]);
        for sub in &command[1..] {
            assert!(
                cli.find_subcommand(sub).is_some(),
                "{name}: `{} {sub}` is not a subcommand",
                command[0]
            );
        }

        let settings: Vec<String> = cli
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        let env = service["environment"].as_hash().expect("environment");
        let mut listen_port = None;
        for (key, value) in env {
            let key = key.as_str().unwrap();
            assert!(
                settings.iter().any(|s| s == key),
                "{name}: {key} is not a setting of {}",
                command[0]
            );
            if key.ends_with("_LISTEN_ADDR") {
                listen_port = value
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .map(str::to_owned);
            }
            if key == "AUTH_SERVICE_URL" {
                let host = value
                    .as_str()
                    .unwrap()
                    .split("//")
                    .nth(1)
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap();
                assert!(
                    names.iter().any(|n| n == host),
                    "{name}: AUTH_SERVICE_URL names {host}, no such service"
                );
            }
        }
        let listen_port = listen_port.unwrap_or_else(|| panic!("{name} sets its listen address"));
        for port in strings(&service["ports"]) {
            assert_eq!(
                port.rsplit(':').next(),
                Some(listen_port.as_str()),
                "{name}: {port} is not the port it listens on"
            );
        }

        let check = strings(&service["healthcheck"]["test"]);
        assert_eq!(
            check[0], "CMD",
            "{name}: the health check runs our binary, no shell needed"
        );
        let check_cli = binary(&check[1]);
        assert!(
            check_cli.find_subcommand(&check[2]).is_some(),
            "{name}: `{} {}` is not a subcommand",
            check[1],
            check[2]
        );

        let depends = service["depends_on"].as_hash().expect("depends_on");
        for (dependency, condition) in depends {
            let dependency = dependency.as_str().unwrap();
            assert!(
                names.iter().any(|n| n == dependency),
                "{name} depends on {dependency}, no such service"
            );
            assert_eq!(condition["condition"].as_str(), Some("service_healthy"));
        }
    }
}

#[test]
fn the_dockerfile_builds_both_binaries_as_a_non_root_user() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile")).unwrap();
    // The text only; `.ci/image-build` runs this very build line and
    // checks what it built.
    let build = text
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build "))
        .expect("a cargo build line");
    assert!(build.contains("--release --locked"), "{build}");
    for package in ["auth-service", "document-service"] {
        assert!(
            build.contains(&format!("-p {package}")),
            "{package} is built: {build}"
        );
    }
    let user = text
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
}
