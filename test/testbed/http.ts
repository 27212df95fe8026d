// The test bed's one-shot requests and free ports are the local clusters' own (src/local-cluster/http.ts), which
// the playground shares; tests take them from here.
export {freeClusterPorts, freePort, request, type ClientCertificate} from '../../src/local-cluster/http.js'
