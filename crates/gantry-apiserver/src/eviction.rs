//! `pods/eviction`: a pod is deleted only if every PodDisruptionBudget that selects it allows a disruption.
