//! Every `portables.d` key, in one table: its name, the type of its value, and where an
//! assignment puts the value in each section that accepts the key.
//!
//! The keys each section accepts, the unknown-key warnings, the check that
//! `portables.d.example` documents every key, and the parsers all follow from [`KEYS`]: a new
//! key is one row here, one field in [`ImageConfig`] or [`Defaults`], and the code that acts
//! on that field.

use super::values::{BOOLEAN, PATH, PROFILE, UNIT_PREFIX, Value, words};
use super::{Defaults, ImageConfig};

/// A section of a `portables.d` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[Portable]`: the settings of one image, in its `NAME.conf`.
    Portable,
    /// `[Defaults]`: global policy, in the `_*.conf` files.
    Defaults,
}

impl Section {
    /// Every section, in the order the documentation lists them.
    pub const ALL: [Section; 2] = [Section::Portable, Section::Defaults];

    /// The name in the section header.
    pub fn name(self) -> &'static str {
        match self {
            Section::Portable => "Portable",
            Section::Defaults => "Defaults",
        }
    }

    /// The section whose header names `name`, if there is one.
    pub fn named(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Every key the section accepts, in table order.
    pub fn keys(self) -> impl Iterator<Item = &'static str> {
        KEYS.iter()
            .filter(move |k| k.accepted_in(self))
            .map(|k| k.name())
    }
}

/// Where a `[Portable]` value goes, and what an empty assignment does there.
pub(super) enum ImageSlot<T: 'static> {
    /// One value, the last assignment wins; an empty one unsets it, so the defaults apply.
    One(fn(&mut ImageConfig) -> &mut Option<T>),
    /// A list: assignments add up, an empty one empties it.
    List(fn(&mut ImageConfig) -> &mut Vec<T>),
    /// A list replacing a built-in one: assignments add up, an empty one unsets it, so the
    /// built-in list applies again.
    ListOrBuiltin(fn(&mut ImageConfig) -> &mut Option<Vec<T>>),
}

impl<T> ImageSlot<T> {
    /// Put `value` in its field. A list takes every word or, if one is invalid, none.
    fn assign(
        &self,
        config: &mut ImageConfig,
        value: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<(), String> {
        match self {
            ImageSlot::One(field) => {
                *field(config) = if value.is_empty() {
                    None
                } else {
                    Some(parse(value)?)
                };
            }
            ImageSlot::List(field) if value.is_empty() => field(config).clear(),
            ImageSlot::List(field) => {
                let words = words(value, parse)?;
                field(config).extend(words);
            }
            ImageSlot::ListOrBuiltin(field) if value.is_empty() => *field(config) = None,
            ImageSlot::ListOrBuiltin(field) => {
                let words = words(value, parse)?;
                field(config).get_or_insert_with(Vec::new).extend(words);
            }
        }
        Ok(())
    }
}

/// One row of the table. A section whose slot is `None` does not accept the key: there it is
/// an unknown key.
pub(super) struct Key<T: 'static> {
    pub name: &'static str,
    /// How a value (each word, for a list) is parsed, and shown in a message.
    pub value: Value<T>,
    /// Where the value goes in `[Portable]`.
    pub portable: Option<ImageSlot<T>>,
    /// Where the value goes in `[Defaults]`: one value, the last assignment wins; an empty or
    /// invalid one puts back the built-in default, the field's value in `Defaults::default()`.
    pub defaults: Option<fn(&mut Defaults) -> &mut T>,
}

/// Why a `[Defaults]` value is invalid, and the built-in default used instead, as a message
/// names it.
pub(super) struct Fallback {
    pub why: String,
    pub default: String,
}

/// A [`Key`] whatever its value type, so that keys of every type share one table.
pub(super) trait AnyKey: Sync {
    fn name(&self) -> &'static str;

    fn accepted_in(&self, section: Section) -> bool;

    /// Apply `value` to an image's settings: `None` if `[Portable]` does not accept the key,
    /// else whether the value is valid and why not.
    fn assign_image(&self, config: &mut ImageConfig, value: &str) -> Option<Result<(), String>>;

    /// Apply `value` to the global defaults: `None` if `[Defaults]` does not accept the key.
    fn assign_default(&self, defaults: &mut Defaults, value: &str) -> Option<Result<(), Fallback>>;
}

/// The key named `name`, in whichever section it is accepted.
pub(super) fn find(name: &str) -> Option<&'static dyn AnyKey> {
    KEYS.iter().copied().find(|k| k.name() == name)
}

/// Every key, in the order `portables.d.example` documents them.
static KEYS: &[&dyn AnyKey] = &[
    &Key {
        name: "Image",
        value: PATH,
        portable: Some(ImageSlot::One(|c| &mut c.image)),
        defaults: None,
    },
    &Key {
        name: "Extensions",
        value: PATH,
        portable: Some(ImageSlot::List(|c| &mut c.extensions)),
        defaults: None,
    },
    &Key {
        name: "Match",
        value: UNIT_PREFIX,
        portable: Some(ImageSlot::ListOrBuiltin(|c| &mut c.matches)),
        defaults: None,
    },
    &Key {
        name: "Profile",
        value: PROFILE,
        portable: Some(ImageSlot::One(|c| &mut c.profile)),
        defaults: Some(|d| &mut d.profile),
    },
    &Key {
        name: "Enable",
        value: BOOLEAN,
        portable: Some(ImageSlot::One(|c| &mut c.enable)),
        defaults: Some(|d| &mut d.enable),
    },
    &Key {
        name: "Attach",
        value: BOOLEAN,
        portable: Some(ImageSlot::One(|c| &mut c.attach)),
        defaults: None,
    },
    &Key {
        name: "AttachOnlyConfigured",
        value: BOOLEAN,
        portable: None,
        defaults: Some(|d| &mut d.attach_only_configured),
    },
    &Key {
        name: "RequireVerity",
        value: BOOLEAN,
        portable: Some(ImageSlot::One(|c| &mut c.require_verity)),
        defaults: Some(|d| &mut d.require_verity),
    },
    &Key {
        name: "AllowWritableByOthers",
        value: BOOLEAN,
        portable: Some(ImageSlot::One(|c| &mut c.allow_writable_by_others)),
        defaults: Some(|d| &mut d.allow_writable_by_others),
    },
];

impl<T: Clone + 'static> AnyKey for Key<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn accepted_in(&self, section: Section) -> bool {
        match section {
            Section::Portable => self.portable.is_some(),
            Section::Defaults => self.defaults.is_some(),
        }
    }

    fn assign_image(&self, config: &mut ImageConfig, value: &str) -> Option<Result<(), String>> {
        let slot = self.portable.as_ref()?;
        Some(slot.assign(config, value, self.value.parse))
    }

    fn assign_default(&self, defaults: &mut Defaults, value: &str) -> Option<Result<(), Fallback>> {
        let field = self.defaults?;
        let builtin = field(&mut Defaults::default()).clone();
        if value.is_empty() {
            *field(defaults) = builtin;
            return Some(Ok(()));
        }
        // An invalid value resets too: a global key concerns every image, so it falls back to
        // the default rather than refuse them all (see parse_defaults).
        let result = match (self.value.parse)(value) {
            Ok(v) => {
                *field(defaults) = v;
                Ok(())
            }
            Err(why) => {
                let default = (self.value.show)(&builtin);
                *field(defaults) = builtin;
                Err(Fallback { why, default })
            }
        };
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_name_each_accepted_somewhere() {
        for (i, key) in KEYS.iter().enumerate() {
            assert!(
                KEYS[..i].iter().all(|k| k.name() != key.name()),
                "{} has two rows",
                key.name()
            );
            assert!(
                Section::ALL.into_iter().any(|s| key.accepted_in(s)),
                "{} is accepted in no section",
                key.name()
            );
            assert!(find(key.name()).is_some());
        }
        assert!(find("X-Vendor").is_none());
    }

    #[test]
    fn keys_by_section() {
        assert_eq!(
            Section::Portable.keys().collect::<Vec<_>>(),
            [
                "Image",
                "Extensions",
                "Match",
                "Profile",
                "Enable",
                "Attach",
                "RequireVerity",
                "AllowWritableByOthers",
            ]
        );
        assert_eq!(
            Section::Defaults.keys().collect::<Vec<_>>(),
            [
                "Profile",
                "Enable",
                "AttachOnlyConfigured",
                "RequireVerity",
                "AllowWritableByOthers",
            ]
        );
        assert_eq!(Section::named("Portable"), Some(Section::Portable));
        assert_eq!(Section::named("Defaults"), Some(Section::Defaults));
        assert_eq!(Section::named("portable"), None);
    }

    #[test]
    fn a_key_of_one_section_is_not_assigned_in_the_other() {
        let mut config = ImageConfig::default();
        let mut defaults = Defaults::default();
        let attach = find("Attach").expect("a key");
        assert!(attach.assign_default(&mut defaults, "no").is_none());
        assert!(matches!(
            attach.assign_image(&mut config, "no"),
            Some(Ok(()))
        ));
        let only = find("AttachOnlyConfigured").expect("a key");
        assert!(only.assign_image(&mut config, "yes").is_none());
        assert!(matches!(
            only.assign_default(&mut defaults, "yes"),
            Some(Ok(()))
        ));
        assert_eq!(config.attach, Some(false));
        assert!(defaults.attach_only_configured);
    }
}
