//! No container engine runs here, so docker-compose.yml is checked against
//! the code instead: every service's command is a real binary and
//! subcommand, every environment variable is a setting the binary reads,
//! every published port is the one it listens on, every health check and
//! dependency is real. The file cannot rot unseen.

use yaml_rust2::{Yaml, YamlLoader};

use crate::deployment::{command_of, settings, strings};

fn compose() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

const FILE: &str = "docker-compose.yml";

fn binary(name: &str) -> clap::Command {
    crate::deployment::binary(FILE, name)
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
        let cli = command_of(FILE, name, &command[0], &command[1..]);
        let settings = settings(&cli);
        let env = service["environment"].as_hash().expect("environment");
        let mut listen_port = None;
        // Every port it listens on (gRPC, the keys over HTTP, metrics).
        let mut ports = Vec::new();
        for (key, value) in env {
            let key = key.as_str().unwrap();
            assert!(
                settings.iter().any(|s| s == key),
                "{name}: {key} is not a setting of {}",
                command[0]
            );
            if key.ends_with("_ADDR")
                && let Some(port) = value.as_str().and_then(|a| a.rsplit(':').next())
            {
                ports.push(port.to_owned());
            }
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
        assert!(
            strings(&service["ports"])
                .iter()
                .any(|p| p.rsplit(':').next() == Some(listen_port.as_str())),
            "{name} publishes its gRPC port {listen_port}"
        );
        for port in strings(&service["ports"]) {
            assert!(
                port.rsplit(':')
                    .next()
                    .is_some_and(|p| ports.iter().any(|l| l == p)),
                "{name}: {port} is not a port it listens on"
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
