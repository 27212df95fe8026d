import {readFile} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../../src/cli/base-command.js'
import {parseDuration} from '../../src/cli/duration.js'
import {invalidInput, usageError} from '../../src/errors.js'
import {log} from '../../src/log.js'
import type {Logger} from '../../src/log.js'
import type {CertificateAndKey} from '../../src/pki/certificates.js'
import {
  KUBERNETES_PORT_RANGE,
  parsePortRange,
  type PortRange,
} from '../../src/tower/proxy/kubernetes/cluster-reconcile.js'
import {FileClusterRegistry} from '../../src/tower/proxy/file-registry.js'
import type {AgentListenerRequests} from '../../src/tower/proxy/agent-listener.js'
import type {ClusterRegistry} from '../../src/tower/proxy/registry.js'
import {loadProxyCa} from '../../src/tower/proxy/issue-kubeconfig.js'
import {defaultKeepalive, parseKeepalive} from '../../src/tower/shared/keepalive.js'
import {parseListenAddress} from '../../src/tower/shared/net.js'
import {TowerProxy} from '../../src/tower/proxy/proxy.js'
import {CurrentCa} from '../../src/tower/proxy/current-ca.js'
import {
  FileServingKeyStore,
  MemoryServingKeyStore,
  type ServingKeyStore,
} from '../../src/tower/proxy/serving-key-store.js'
import {exitOnEscapedError, runUntilSignalled} from '../../src/tower/shared/signals.js'

export default class TowerProxyCommand extends BaseCommand<typeof TowerProxyCommand> {
  static override summary =
    'Run the tunnel proxy on the host: accept agents, forward host clients to members.'
  static override description = [
    "Kubernetes mode (no --clusters): reconciles the host's KubeSphere Cluster objects the way Tower does (token, ports, Service mc-NAME, endpoints, Initialized, AgentAvailable, an issued kubeconfig), with the CA from --ca-cert/--ca-key or a Secret made on first start.",
    'Standalone mode: the clusters come from --clusters, a YAML list of {name, token, nextToken?, kubernetesPort?, kubespherePort?} (re-read on SIGHUP; nextToken is accepted beside token during a rotation by hand).',
    'Agents connect to --listen (TLS with --tls-cert/--tls-key, or a certificate issued by the proxy CA; plain only with --insecure-plain, which the agents need too). Host clients reach member NAME at https://FRONT-END/clusters/NAME, or at the cluster\'s own ports, with a client certificate from the proxy CA bound to that cluster (see "ksctl tower issue-kubeconfig"); each request runs on the member as the certificate\'s user and groups, which the agent impersonates.',
    'SIGTERM: no new agents or clients, open streams finish within --grace-period. Long-running: there is no --json result.',
  ].join('\n\n')

  // A long-running process has no result document; its logs (--log-format json) are the machine interface.
  static override enableJsonFlag = false

  static override examples = [
    '<%= config.bin %> <%= command.id %> --clusters=clusters.yaml --state-dir=/var/lib/ksctl-proxy --server-name=tower.example.com',
  ]

  static override flags = {
    clusters: Flags.string({
      description: 'YAML file listing the clusters (standalone mode); without it, Kubernetes mode',
    }),
    context: Flags.string({
      description: 'Kubernetes mode: kubeconfig context of the host (default: current, or in-cluster)',
    }),
    namespace: Flags.string({
      description: 'Kubernetes mode: namespace of the mc-NAME Services and of the CA and serving-key Secrets',
      default: 'kubesphere-system',
    }),
    'kubeconfig-validity': Flags.string({
      description:
        'Kubernetes mode: validity of the kubeconfigs written into Clusters (each is issued again at two thirds of it, and when the CA changes)',
      default: '8760h',
    }),
    'serving-validity': Flags.string({
      description:
        'validity of the serving certificates (kept key, issued by the proxy CA), each issued again at two thirds of it',
      default: '8760h',
    }),
    'cluster-domain': Flags.string({
      description:
        "Kubernetes mode: the host cluster's DNS domain, for the names of Service mc-NAME in certificates",
      default: 'cluster.local',
    }),
    resync: Flags.string({description: 'Kubernetes mode: how often Clusters are reconciled', default: '5s'}),
    'cluster-ports': Flags.string({
      description:
        "Kubernetes mode: the range each Cluster's kubernetes port is chosen from (its kubesphere port is 10000 higher)",
      default: `${KUBERNETES_PORT_RANGE.first}-${KUBERNETES_PORT_RANGE.last}`,
    }),
    listen: Flags.string({description: 'address of the agents WebSocket listener', default: '0.0.0.0:8080'}),
    'tls-cert': Flags.string({description: 'serving certificate (PEM) of the agent listener'}),
    'tls-key': Flags.string({description: 'key (PEM) of --tls-cert'}),
    'insecure-plain': Flags.boolean({
      description: 'serve agents over plain ws:// (tokens unencrypted; the agents need --insecure-plain too)',
      default: false,
    }),
    'ca-cert': Flags.string({description: 'proxy CA certificate (signs front-end and client certificates)'}),
    'ca-key': Flags.string({description: 'key of --ca-cert'}),
    'state-dir': Flags.string({
      description:
        'where the proxy CA is created on first start when --ca-cert is not given; standalone mode keeps the serving key there too',
    }),
    'front-end': Flags.string({
      description: 'address of the path-routed HTTPS front end',
      default: '0.0.0.0:6443',
    }),
    'server-name': Flags.string({
      description:
        'DNS name or IP clients and agents use for the proxy, put in its certificates (repeatable)',
      multiple: true,
      default: [],
    }),
    keepalive: Flags.string({
      description: 'interval of tunnel pings; a link silent for three intervals is dead',
      default: defaultKeepalive,
    }),
    'grace-period': Flags.string({
      description: 'on SIGTERM, how long open streams may finish',
      default: '30s',
    }),
    'metrics-address': Flags.string({description: 'host:port for /healthz, /readyz and /metrics'}),
  }

  async run(): Promise<void> {
    const {flags} = this
    const proxyLog = log.child({component: 'proxy'})
    exitOnEscapedError(proxyLog)
    parseListenAddress(flags.listen, '--listen')
    parseListenAddress(flags['front-end'], '--front-end')
    const pingIntervalMs = parseKeepalive(flags.keepalive)
    const goAwayGraceMs = parseDuration(flags['grace-period'], '--grace-period')
    const portRange = parsePortRange(flags['cluster-ports'], '--cluster-ports')
    const resyncMs = parseDuration(flags.resync, '--resync')
    const kubeconfigValidityMs = positive(
      parseDuration(flags['kubeconfig-validity'], '--kubeconfig-validity'),
      '--kubeconfig-validity',
    )
    const servingValidityMs = positive(
      parseDuration(flags['serving-validity'], '--serving-validity'),
      '--serving-validity',
    )
    const agentTls = await this.agentTls()
    const {ca, registry, servingKeyStore, agentRequests} =
      flags.clusters === undefined
        ? await this.kubernetesMode(proxyLog, {portRange, resyncMs, kubeconfigValidityMs})
        : await this.standaloneMode(flags.clusters)
    const proxy = new TowerProxy({
      registry,
      ca,
      listen: flags.listen,
      agentTls,
      frontEnd: flags['front-end'],
      serverNames: flags['server-name'],
      servingKeyStore,
      ...(agentRequests !== undefined && {agentRequests}),
      servingValidityMs,
      ...(flags['metrics-address'] !== undefined && {metricsAddress: flags['metrics-address']}),
      pingIntervalMs,
      goAwayGraceMs,
      log: proxyLog,
    })
    await proxy.start()
    await runUntilSignalled(
      new Promise<void>(() => undefined),
      async () => {
        proxyLog.info('stopping: draining open streams')
        await proxy.stop()
      },
      () => {
        if (!(registry instanceof FileClusterRegistry)) return
        registry.reload().then(
          () => proxyLog.info('reloaded --clusters', {clusters: registry.list().length}),
          (error: unknown) =>
            proxyLog.error('cannot reload --clusters; keeping the previous clusters', {
              reason: error instanceof Error ? error.message : String(error),
            }),
        )
      },
    )
  }

  private async standaloneMode(clusters: string): Promise<ProxyMode> {
    const {flags} = this
    const stateDir = flags['state-dir']
    const ca = await loadProxyCa({caCert: flags['ca-cert'], caKey: flags['ca-key'], stateDir}, true)
    return {
      ca,
      registry: await FileClusterRegistry.open(clusters),
      servingKeyStore:
        stateDir === undefined ? new MemoryServingKeyStore() : new FileServingKeyStore(stateDir),
    }
  }

  /**
   * Clusters are KubeSphere Cluster objects on the host (--kubeconfig/--context, or the pod's service account);
   * the CA is --ca-cert/--ca-key, or the one kept in a Secret, made on first start.
   */
  private async kubernetesMode(
    proxyLog: Logger,
    settings: {portRange: PortRange; resyncMs: number; kubeconfigValidityMs: number},
  ): Promise<ProxyMode> {
    const {flags} = this
    // Loaded here only: the Kubernetes client library costs ~85 MiB that standalone mode does without.
    const [
      {ClusterClients},
      {KubernetesClusterRegistry},
      {loadOrCreateProxyCa, readProxyCa},
      {retryTransient},
      {SecretServingKeyStore},
      {JoinExchange},
    ] = await Promise.all([
      import('../../src/k8s/clients.js'),
      import('../../src/tower/proxy/kubernetes/kubernetes-registry.js'),
      import('../../src/tower/proxy/kubernetes/proxy-ca.js'),
      import('../../src/tower/proxy/kubernetes/api-retry.js'),
      import('../../src/tower/proxy/kubernetes/serving-secret.js'),
      import('../../src/tower/proxy/join-exchange.js'),
    ])
    const client = ClusterClients.load(
      {kubeconfig: flags.kubeconfig, inClusterFallback: true},
      this.timeoutMs,
    ).forContext(flags.context)
    const caFiles = {caCert: flags['ca-cert'], caKey: flags['ca-key'], stateDir: flags['state-dir']}
    const inSecret = flags['ca-cert'] === undefined && flags['ca-key'] === undefined
    // Read again on every reconcile, so that a CA rotated in its Secret (or its mounted files) is taken.
    const ca = inSecret
      ? new CurrentCa(
          await retryTransient(() => loadOrCreateProxyCa(client, flags.namespace, proxyLog), {
            log: proxyLog,
            what: 'read the proxy CA',
          }),
          () => readProxyCa(client, flags.namespace),
        )
      : new CurrentCa(await loadProxyCa(caFiles, false), () => loadProxyCa(caFiles, false))
    const registry = new KubernetesClusterRegistry(client, {
      ca,
      kubeconfigValidityDays: settings.kubeconfigValidityMs / 86_400_000,
      resyncMs: settings.resyncMs,
      namespace: flags.namespace,
      portRange: settings.portRange,
      clusterDomain: flags['cluster-domain'],
      log: proxyLog,
    })
    await registry.start()
    proxyLog.info('Kubernetes mode: serving the proxy Clusters of context', {
      context: client.context,
      clusters: registry.list().length,
    })
    return {
      ca,
      registry,
      servingKeyStore: new SecretServingKeyStore(client, flags.namespace),
      // Members that hold a join token (ksctl host invite) trade it here for their agent token.
      agentRequests: new JoinExchange({client, registry, namespace: flags.namespace, log: proxyLog}),
    }
  }

  private async agentTls(): Promise<{certPem: string; keyPem: string} | 'serving' | undefined> {
    const {flags} = this
    if (flags['insecure-plain']) {
      if (flags['tls-cert'] !== undefined)
        throw usageError('--insecure-plain and --tls-cert exclude each other')
      return undefined
    }
    if ((flags['tls-cert'] === undefined) !== (flags['tls-key'] === undefined)) {
      throw usageError('--tls-cert and --tls-key go together')
    }
    if (flags['tls-cert'] !== undefined && flags['tls-key'] !== undefined) {
      try {
        return {
          certPem: await readFile(flags['tls-cert'], 'utf8'),
          keyPem: await readFile(flags['tls-key'], 'utf8'),
        }
      } catch {
        throw invalidInput('cannot read --tls-cert or --tls-key')
      }
    }
    // No certificate given: the proxy's kept serving key, certified by the proxy CA, which agents then trust with
    // --proxy-ca (or pin with --proxy-pin).
    return 'serving'
  }
}

interface ProxyMode {
  ca: CertificateAndKey | CurrentCa
  registry: ClusterRegistry
  servingKeyStore: ServingKeyStore
  agentRequests?: AgentListenerRequests
}

function positive(ms: number, flag: string): number {
  if (ms <= 0) throw invalidInput(`${flag} must be longer than 0s`, [`e.g. ${flag}=8760h`])
  return ms
}
