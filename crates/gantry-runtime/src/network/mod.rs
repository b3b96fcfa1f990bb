//! Pod networking: CNI plugins and the namespaces that hold a pod's network, IPC and UTS.
