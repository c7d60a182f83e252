//! `docker-compose.yml` and the `Dockerfile` stay consistent with the
//! configuration: our CI has no Docker engine, so this reads the files and
//! feeds each Ondol service's environment and command through the real
//! config loader and command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// Resolves `<<` merge keys (YAML 1.1), which yaml-rust2 leaves as plain keys.
fn merged(node: &Yaml) -> Yaml {
    match node {
        Yaml::Hash(hash) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            for (key, value) in hash {
                if key.as_str() != Some("<<") {
                    out.insert(key.clone(), merged(value));
                }
            }
            if let Some(Yaml::Hash(base)) = hash.get(&Yaml::String("<<".into())).map(merged) {
                for (key, value) in base {
                    out.entry(key).or_insert(value);
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.iter().map(merged).collect()),
        other => other.clone(),
    }
}

/// `${VAR:-default}` → default; `${VAR:?message}` and `${VAR}` → a placeholder.
fn substitute(value: &str) -> String {
    let Some(start) = value.find("${") else {
        return value.to_owned();
    };
    let end = value[start..].find('}').expect("closing brace") + start;
    let inner = &value[start + 2..end];
    let replacement = match inner.split_once(":-") {
        Some((_, default)) => default.to_owned(),
        None => "compose-placeholder".to_owned(),
    };
    format!(
        "{}{replacement}{}",
        &value[..start],
        substitute(&value[end + 1..])
    )
}

fn environment(service: &Yaml) -> BTreeMap<String, String> {
    service["environment"]
        .as_hash()
        .map(|env| {
            env.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unexpected env value {other:?}"),
                    };
                    (k.as_str().expect("env name").to_owned(), substitute(&value))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn docker_compose_matches_the_configuration_keys_and_roles() {
    let text =
        std::fs::read_to_string(repo_file("docker-compose.yml")).expect("docker-compose.yml");
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML");
    let doc = merged(&docs[0]);
    let services = doc["services"].as_hash().expect("services");
    for name in [
        "influxdb",
        "mosquitto",
        "ingest-1",
        "ingest-2",
        "alerting-api",
    ] {
        assert!(
            services.contains_key(&Yaml::String(name.into())),
            "service {name} missing"
        );
    }
    assert!(
        doc["services"]["influxdb"]["image"]
            .as_str()
            .expect("image")
            .starts_with("influxdb:2.7")
    );
    let influx_env = environment(&doc["services"]["influxdb"]);
    assert_eq!(influx_env["DOCKER_INFLUXDB_INIT_MODE"], "setup");

    let mut client_ids = Vec::new();
    let mut ondol_services = 0;
    let mut workers = 0;
    let mut alerting_services = Vec::new();
    for (name, service) in services {
        if service["build"].is_badvalue() {
            continue;
        }
        ondol_services += 1;
        let name = name.as_str().expect("service name");
        let env = environment(service);
        let config_env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("ONDOL_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // The image's config file is config/ondol.toml (Dockerfile copies config/).
        let config = ondol::config::Config::load(Some(&repo_file("config/ondol.toml")), config_env)
            .unwrap_or_else(|e| panic!("service {name}: {e}"));
        let command: Vec<String> = service["command"]
            .as_vec()
            .expect("command list")
            .iter()
            .map(|a| a.as_str().expect("argument").to_owned())
            .collect();
        ondol::cli::Cli::try_parse_from(std::iter::once("ondol".to_owned()).chain(command.clone()))
            .unwrap_or_else(|e| panic!("service {name}: command {command:?}: {e}"));
        let roles = command
            .iter()
            .skip_while(|a| *a != "--role")
            .nth(1)
            .unwrap_or_else(|| panic!("{name} names its roles"))
            .split(',')
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if roles.iter().any(|r| r == "alerting") {
            alerting_services.push(name.to_owned());
            assert!(
                roles.iter().any(|r| r == "api"),
                "{name} serves the API beside alerting"
            );
            assert!(
                service["ports"]
                    .as_vec()
                    .is_some_and(|ports| ports.iter().any(|p| p.as_str() == Some("8080:8080"))),
                "{name} publishes the API's port"
            );
            let admin = ondol::roster::read(&repo_file("config/registry.toml"))
                .expect("registry")
                .staff
                .into_iter()
                .find(|s| s.role == ondol_model::roster::StaffRole::Admin)
                .and_then(|s| s.token_env)
                .expect("an admin with a token variable");
            assert!(
                env.contains_key(&admin),
                "{name} passes the admin's token {admin}"
            );
        } else {
            assert_eq!(roles, ["ingest"], "{name} runs an ingest worker");
            workers += 1;
        }
        assert_eq!(
            config.http.listen.to_string(),
            "0.0.0.0:8080",
            "{name} answers health checks and metrics inside the network"
        );
        assert!(
            service["volumes"].as_vec().is_some_and(|v| v
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.starts_with("ondol-data:")))),
            "{name} shares the store's volume"
        );
        assert!(
            config.ingest.broker.to_string().starts_with("mqtt://"),
            "{name} reads from the external broker"
        );
        assert_eq!(
            config.ingest.share_group, "ondol",
            "{name} is in the share group"
        );
        assert_eq!(
            config.timeseries.backend,
            ondol::config::TimeseriesBackend::Influxdb
        );
        let influx = &config.timeseries.influxdb;
        assert!(
            env.contains_key(&influx.token_env),
            "{name} sets {}",
            influx.token_env
        );
        assert_eq!(influx.org, influx_env["DOCKER_INFLUXDB_INIT_ORG"]);
        assert_eq!(influx.bucket, influx_env["DOCKER_INFLUXDB_INIT_BUCKET"]);
        assert_eq!(
            env[&influx.token_env],
            influx_env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
        );
        client_ids.push(config.ingest.client_id.clone());
    }
    assert_eq!(
        ondol_services, 3,
        "two ingest workers and alerting with the API"
    );
    assert_eq!(workers, 2, "two ingest workers");
    assert_eq!(alerting_services.len(), 1, "one alerting process per store");
    client_ids.sort();
    client_ids.dedup();
    assert_eq!(client_ids.len(), 3, "each process has its own client id");

    let mosquitto =
        std::fs::read_to_string(repo_file("deploy/mosquitto.conf")).expect("mosquitto.conf");
    assert!(mosquitto.lines().any(|l| l.trim() == "persistence true"));
    let dockerfile = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("COPY config/ /etc/ondol/"));
    assert!(repo_file("config/registry.toml").exists());
}
