//! The controller's maps: persistent (`im`), so that a snapshot for the
//! readers is O(1) and a write copies only the path it changes. Values sit
//! behind an `Arc`: im keeps 64 entries inline per node, and nodes of whole
//! endpoints made its debug builds overflow a 2 MiB thread stack.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PMap<V>(im::OrdMap<String, Arc<V>>);

impl<V> Default for PMap<V> {
    fn default() -> Self {
        PMap(im::OrdMap::new())
    }
}

impl<V: Clone> PMap<V> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.get(key).map(|v| &**v)
    }
    /// The value, copied first if a snapshot shares it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.0.get_mut(key).map(Arc::make_mut)
    }
    pub fn insert(&mut self, key: String, value: V) {
        self.0.insert(key, Arc::new(value));
    }
    /// The value at `key`, inserted from `f` if there is none.
    pub fn or_insert_with(&mut self, key: String, f: impl FnOnce() -> V) -> &mut V {
        Arc::make_mut(self.0.entry(key).or_insert_with(|| Arc::new(f())))
    }
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.0.remove(key).map(Arc::unwrap_or_clone)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.values().map(|v| &**v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, &**v))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Whether both share all their data: no write came between them.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
    }
}

impl<V: Clone + 'static> IntoIterator for PMap<V> {
    type Item = (String, V);
    type IntoIter = Box<dyn Iterator<Item = (String, V)>>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(
            self.0
                .into_iter()
                .map(|(k, v)| (k, Arc::unwrap_or_clone(v))),
        )
    }
}

impl<V: Clone> FromIterator<(String, V)> for PMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(it: I) -> Self {
        PMap(it.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }
}

impl<V: Serialize> Serialize for PMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, &**v)))
    }
}

impl<'de, V: Deserialize<'de> + Clone> Deserialize<'de> for PMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, V>::deserialize(d)?.into_iter().collect())
    }
}

impl<'a, V: Clone> IntoIterator for &'a PMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = Box<dyn Iterator<Item = (&'a String, &'a V)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// As `BTreeMap`'s: panics when the key is missing.
impl<V: Clone, K: AsRef<str> + ?Sized> std::ops::Index<&K> for PMap<V> {
    type Output = V;
    fn index(&self, key: &K) -> &V {
        match self.get(key.as_ref()) {
            Some(v) => v,
            None => panic!("no entry {:?}", key.as_ref()),
        }
    }
}
