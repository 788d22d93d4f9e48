//! Endpoints, features, bindings, experiments and policies: parsing and validation.
