//! Who else is online: the presence table fed by `domain-state`, `user-state` and `blf`
//! (docs/protocol.md §5), reporting each extension only when its status really changes.

use std::collections::HashMap;

use crate::protocol::{ClientStatus, Presence};

/// One extension as scripts see it (`on_client_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub number: String,
    pub name: String,
    pub status: ClientStatus,
    pub dnd: bool,
}

/// The last known state of every extension of the domain, except our own.
#[derive(Debug)]
pub struct PresenceTable {
    own: String,
    clients: HashMap<String, Client>,
}

impl PresenceTable {
    pub fn new(own_extension: &str) -> Self {
        Self {
            own: own_extension.to_owned(),
            clients: HashMap::new(),
        }
    }

    /// Records one presence report; returns the client when its status or dnd flag changed
    /// (or it was not known and is online).
    pub fn update(&mut self, presence: &Presence) -> Option<Client> {
        if presence.account == self.own || presence.account.is_empty() {
            return None;
        }
        let status = if presence.registered {
            ClientStatus::Online
        } else {
            ClientStatus::Offline
        };
        let name = presence.name.clone();
        match self.clients.get_mut(&presence.account) {
            Some(known) => {
                if let Some(name) = name {
                    known.name = name;
                }
                if known.status == status && known.dnd == presence.dnd {
                    return None;
                }
                known.status = status;
                known.dnd = presence.dnd;
                Some(known.clone())
            }
            None => {
                let client = Client {
                    number: presence.account.clone(),
                    name: name.unwrap_or_default(),
                    status,
                    dnd: presence.dnd,
                };
                self.clients.insert(client.number.clone(), client.clone());
                (status == ClientStatus::Online).then_some(client)
            }
        }
    }

    /// Every known extension, ordered by number.
    #[cfg(test)]
    pub fn clients(&self) -> Vec<Client> {
        let mut all: Vec<Client> = self.clients.values().cloned().collect();
        all.sort_by(|a, b| a.number.cmp(&b.number));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(account: &str, registered: bool) -> Presence {
        Presence {
            account: account.into(),
            domain: None,
            name: Some(format!("Ext {account}")),
            registered,
            dnd: false,
            chatstatus: None,
            kind: None,
        }
    }

    #[test]
    fn reports_only_changes() {
        let mut table = PresenceTable::new("500");
        let online = table
            .update(&presence("501", true))
            .expect("new and online");
        assert_eq!(online.status, ClientStatus::Online);
        assert_eq!(online.name, "Ext 501");
        assert_eq!(table.update(&presence("501", true)), None);
        let offline = table.update(&presence("501", false)).expect("went offline");
        assert_eq!(offline.status, ClientStatus::Offline);
    }

    #[test]
    fn unknown_offline_extensions_are_noted_silently() {
        let mut table = PresenceTable::new("500");
        assert_eq!(table.update(&presence("502", false)), None);
        assert!(table.update(&presence("502", true)).is_some());
        assert_eq!(table.clients().len(), 1);
    }

    #[test]
    fn own_extension_is_not_a_client() {
        let mut table = PresenceTable::new("500");
        assert_eq!(table.update(&presence("500", true)), None);
        assert!(table.clients().is_empty());
    }

    #[test]
    fn dnd_change_is_reported() {
        let mut table = PresenceTable::new("500");
        table.update(&presence("501", true));
        let mut dnd = presence("501", true);
        dnd.dnd = true;
        assert!(table.update(&dnd).expect("dnd changed").dnd);
    }
}
