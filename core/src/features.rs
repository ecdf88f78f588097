//! Feature sets: which methods one connection may call.
//!
//! The application decides a connection's set in its connection factory
//! (from headers, cookies, the peer address) and may change it from a
//! handler (an `authenticate` method enabling the full set). The server
//! checks the set before decoding a call's input, so a disabled method's
//! handler never runs and its input is never parsed. Every change is sent
//! to the client (`FEATURES`, kind `0x21`) in order with state changes.
//!
//! This module is the handle ([`Features`]); the value and its wire form are
//! [`crate::feature_set::FeatureSet`].

use std::rc::Rc;

use crate::feature_set::FeatureSet;
use crate::outbox::Outbox;

/// The server-side handle to one connection's feature set. Cheap to clone.
#[derive(Clone)]
pub struct Features {
    outbox: Rc<Outbox>,
}

impl Features {
    /// The handle for the connection behind `outbox`.
    pub fn new(outbox: Rc<Outbox>) -> Self {
        Self { outbox }
    }

    /// The current set.
    pub fn current(&self) -> FeatureSet {
        self.outbox.features()
    }

    /// Whether method `id` is enabled now.
    pub fn is_enabled(&self, id: u16) -> bool {
        self.outbox.is_enabled(id)
    }

    /// Replaces the set.
    pub fn set(&self, set: FeatureSet) {
        self.outbox.update_features(|s| *s = set);
    }

    /// Enables exactly `ids`, disabling every other method.
    pub fn only(&self, ids: impl IntoIterator<Item = u16>) {
        self.outbox.update_features(|s| *s = FeatureSet::only(s.method_count(), ids));
    }

    /// Enables every method.
    pub fn enable_all(&self) {
        self.outbox.update_features(|s| *s = FeatureSet::all(s.method_count()));
    }

    /// Enables `ids` in addition to those enabled.
    pub fn enable(&self, ids: impl IntoIterator<Item = u16>) {
        self.outbox.update_features(|s| {
            for id in ids {
                s.enable(id);
            }
        });
    }

    /// Disables `ids`.
    pub fn disable(&self, ids: impl IntoIterator<Item = u16>) {
        self.outbox.update_features(|s| {
            for id in ids {
                s.disable(id);
            }
        });
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_set::FeatureSet;

    #[test]
    fn changes_are_queued_only_when_the_set_changes() {
        let outbox = Rc::new(Outbox::new(4));
        let f = Features::new(outbox.clone());
        assert!(f.is_enabled(3));
        f.disable([1]); // before the upgrade: folded into the announcement
        outbox.open();
        assert_eq!(
            FeatureSet::decode(&outbox.take_messages_for_test()[0][1..]).unwrap(),
            FeatureSet::only(4, [0, 2, 3])
        );
        f.only([0]);
        assert!(!f.is_enabled(3));
        f.only([0]); // no change, no message
        f.enable([2, 3]);
        let msgs = outbox.take_messages_for_test();
        assert_eq!(msgs.len(), 2);
        assert_eq!(FeatureSet::decode(&msgs[0][1..]).unwrap(), FeatureSet::only(4, [0]));
        assert_eq!(FeatureSet::decode(&msgs[1][1..]).unwrap(), FeatureSet::only(4, [0, 2, 3]));
    }
}
