//! `palisade-collector token …` and `user …`: the API tokens and dashboard
//! users IT manages from the command line.

use anyhow::{Context as _, bail};
use chrono::Utc;

use super::{Creating, TokenCommand, UserCommand, cli_actor, open_store};
use crate::config::CollectorConfig;
use crate::secrets;
use crate::store::{AuditEntry, NewApiToken, Role};

pub(super) async fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { store, role, label } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let token = secrets::generate("plt");
            let role = Role::from(role);
            let now = Utc::now();
            store
                .create_api_token(&NewApiToken {
                    id: token.id.clone(),
                    token_hash: token.hash,
                    role,
                    label: label.clone(),
                    created_at: now,
                })
                .await?;
            store
                .append_audit(&AuditEntry {
                    at: now,
                    actor: cli_actor(),
                    action: "token.create".into(),
                    target: token.id.clone(),
                    details_json: serde_json::json!({ "role": role.as_str(), "label": label })
                        .to_string(),
                })
                .await?;
            // The only place the token is ever shown.
            println!("{}", token.text);
            eprintln!(
                "{} token {} created; it is shown once and stored only as a hash",
                role.as_str(),
                token.id
            );
            Ok(())
        }
        TokenCommand::List { store } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            for token in store.list_api_tokens().await? {
                println!(
                    "{}\t{}\tcreated {}\t{}\t{}",
                    token.id,
                    token.role.as_str(),
                    token.created_at.to_rfc3339(),
                    token.revoked_at.map_or("active".to_owned(), |t| format!(
                        "revoked {}",
                        t.to_rfc3339()
                    )),
                    token.label
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { store, id } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let now = Utc::now();
            if !store.revoke_api_token(&id, now).await? {
                bail!("no API token {id:?}");
            }
            store
                .append_audit(&AuditEntry {
                    at: now,
                    actor: cli_actor(),
                    action: "token.revoke".into(),
                    target: id.clone(),
                    details_json: "{}".into(),
                })
                .await?;
            println!("API token {id} revoked");
            Ok(())
        }
    }
}

/// The most characters a user name may have: a name, not a document.
const MAX_USERNAME_CHARS: usize = 64;

pub(super) async fn run_user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            store,
            username,
            role,
        } => {
            let username = username.trim().to_owned();
            if username.is_empty()
                || username.chars().count() > MAX_USERNAME_CHARS
                || username.chars().any(char::is_control)
            {
                bail!(
                    "--username must be 1 to {MAX_USERNAME_CHARS} characters without control \
                     characters"
                );
            }
            let config = CollectorConfig::load(&store.overrides())?;
            let password = read_new_password()?;
            crate::web::auth::check_new_password(&password).map_err(anyhow::Error::msg)?;
            let hash = crate::web::auth::hash_password(&password)
                .map_err(|err| anyhow::anyhow!("cannot hash the password: {err}"))?;
            drop(password);
            let store = open_store(&config, Creating::Never).await?;
            let role = Role::from(role);
            let now = Utc::now();
            let created = store
                .create_admin_user(&crate::store::NewAdminUser {
                    username: username.clone(),
                    password_hash: hash,
                    role,
                    created_at: now,
                })
                .await?;
            if !created {
                bail!("a user named {username:?} already exists");
            }
            store
                .append_audit(&AuditEntry {
                    at: now,
                    actor: cli_actor(),
                    action: "user.create".into(),
                    target: username.clone(),
                    details_json: serde_json::json!({ "role": role.as_str() }).to_string(),
                })
                .await?;
            println!("{} user {username} created", role.as_str());
            Ok(())
        }
        UserCommand::List { store } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            let now = Utc::now();
            for user in store.list_admin_users().await? {
                let state = match user.locked_until {
                    Some(until) if until > now => format!("locked until {}", until.to_rfc3339()),
                    _ => "active".to_owned(),
                };
                println!(
                    "{}\t{}\tcreated {}\t{state}",
                    user.username,
                    user.role.as_str(),
                    user.created_at.to_rfc3339()
                );
            }
            Ok(())
        }
        UserCommand::Delete { store, username } => {
            let config = CollectorConfig::load(&store.overrides())?;
            let store = open_store(&config, Creating::Never).await?;
            if !store.delete_admin_user(&username).await? {
                bail!("no user {username:?}");
            }
            store
                .append_audit(&AuditEntry {
                    at: Utc::now(),
                    actor: cli_actor(),
                    action: "user.delete".into(),
                    target: username.clone(),
                    details_json: "{}".into(),
                })
                .await?;
            println!("user {username} deleted");
            Ok(())
        }
    }
}

/// The new user's password: the first line of standard input when it is
/// not a terminal (scripts, tests), else typed twice without echo.
fn read_new_password() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_owned();
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password (at least 12 characters): ")
        .context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Password again: ").context("cannot read the password")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
