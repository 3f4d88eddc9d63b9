//! The shell every logged-in page shares: head, navigation, who is logged
//! in and the logout form. The element ids here are a contract with the
//! browser tests (`#nav-*`, `#whoami`, `#logout`); keep them.

use maud::{DOCTYPE, Markup, html};

use super::auth::Session;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Devices,
    Enrollment,
    Policy,
    Exceptions,
    Audit,
}

const ENTRIES: [(Nav, &str, &str, &str); 6] = [
    (Nav::Overview, "nav-overview", "/", "Overview"),
    (Nav::Devices, "nav-devices", "/devices", "Devices"),
    (
        Nav::Enrollment,
        "nav-enrollment",
        "/enrollment",
        "Enrollment",
    ),
    (Nav::Policy, "nav-policy", "/policy", "Policy"),
    (
        Nav::Exceptions,
        "nav-exceptions",
        "/exceptions",
        "Exceptions",
    ),
    (Nav::Audit, "nav-audit", "/audit", "Audit log"),
];

/// A whole page: `title` in the tab and as the heading, `body` below.
pub fn page(session: &Session, current: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Palisade" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header class="top" {
                    span class="brand" { "Palisade" }
                    nav aria-label="Main" {
                        @for (nav, id, href, label) in ENTRIES {
                            @if nav == current {
                                a id=(id) href=(href) aria-current="page" { (label) }
                            } @else {
                                a id=(id) href=(href) { (label) }
                            }
                        }
                    }
                    div class="user" {
                        span id="whoami" { (session.username) }
                        " "
                        span class="role" { "(" (session.role.as_str()) ")" }
                        form id="logout" method="post" action="/logout" {
                            (csrf_field(session))
                            button id="logout-submit" type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf_token); }
}

/// A status as a coloured label (the class names the colour in the CSS).
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "status status-" (status) } { (status.replace('_', " ")) } }
}
