import {Args, Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {parseAgentRenderRequest} from '../../src/kubesphere/agent-input.js'
import {agentManifestYaml, type ManifestObject} from '../../src/kubesphere/agent-manifest.js'
import {planAgentRender} from '../../src/kubesphere/agent-render.js'
import {TUNNEL_RUNTIMES, type TunnelRuntime} from '../../src/kubesphere/agent-runtime.js'
import type {Edition} from '../../src/kubesphere/detect.js'
import {log} from '../../src/log.js'
import {writePrivateFile} from '../../src/private-file.js'
import {revealed} from '../../src/redact.js'

/** What `ksctl agent render --json` prints. Part of the `--json` contract: add fields, never rename. */
export interface AgentRenderResult {
  name: string
  edition: Edition
  /** The host context the settings were read from; absent when rendered from flags alone (`--token`). */
  context?: string
  proxyAddress: string
  /** Where proxyAddress came from: `--proxy-address`, a proxyPublishAddress, or a LoadBalancer ingress. */
  proxyAddressSource: string
  /** Whose agent: `tower` (KubeSphere's) or `ksctl`. */
  runtime: TunnelRuntime
  /** What the agent dials: proxyAddress, for ksctl's agent as `wss://`. */
  agentAddress: string
  /** ksctl's agent: whether it trusts the proxy by its CA (a ConfigMap in the manifest) or by a pin. */
  proxyTrust?: 'ca' | 'pin'
  image: string
  replicas: number
  /**
   * The manifest's objects, agent token included, but only when no `--output` file was given: the manifest
   * is then the result the user asked for, exactly as it is on stdout without `--json`. With `--output`
   * the token stays in the 0600 file, and the JSON document (often kept in CI logs) names the file instead.
   */
  objects?: ManifestObject[]
  /** The `--output` file, as an absolute path. */
  file?: string
}

const resourceFlag = (what: string, example: string) =>
  Flags.string({description: `${what} of the agent container (KubeSphere: ${example})`, helpGroup: 'AGENT'})

export default class AgentRender extends ClusterCommand<typeof AgentRender> {
  static override summary =
    'Print the agent manifest a member cluster runs to connect to its host through the tower proxy.'
  // One line per paragraph: oclif wraps help text to the terminal itself.
  static override description = [
    "For the runtime the host runs (its tower Service selects app.kubernetes.io/name=ksctl-tower-proxy: ksctl's; else Tower's), or --runtime when the host agrees; which one and why is printed on stderr.",
    "Tower's agent: renders locally exactly what KubeSphere's own endpoint serves for a proxy cluster (3.x: the Deployment cluster-agent; 4.x: also a namespace, a ServiceAccount tower and its cluster-admin binding), from what the host holds: the Cluster's connection token, the proxy address (proxyPublishAddress, else the tower LoadBalancer) and the agent image. No KubeSphere login is needed. The AGENT flags change KubeSphere's manifest; without them it is byte for byte KubeSphere's. More than one replica needs a tower proxy that accepts several agents for one cluster.",
    "ksctl's agent: Deployment ksctl-tower-agent running ksctl tower agent, with the token in Secret ksctl-tower-agent-token (a file, never an argument), the published address as wss://, the proxy CA from the host's Secret ksctl-tower-ca (its certificate only) or --proxy-pin, a ServiceAccount that may only impersonate, KubeSphere's identity bound to cluster-admin, probes, metrics and a restricted securityContext.",
    "With --token and --proxy-address it reads no cluster and no kubeconfig (ksctl's agent then needs --proxy-ca or --proxy-pin).",
    "The manifest holds the cluster's agent token: --output writes it to a file only you can read.",
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --context host --output member1-agent.yaml',
    '<%= config.bin %> <%= command.id %> member1 --context host | kubectl --context member1 create -f -',
    '<%= config.bin %> <%= command.id %> member1 --token <token> --proxy-address http://192.0.2.10:8080 --edition 3',
    '<%= config.bin %> <%= command.id %> member1 --replicas 2 --http-proxy http://proxy.example.com:3128',
    '<%= config.bin %> <%= command.id %> member1 --token <token> --proxy-address http://192.0.2.10:30721 --runtime ksctl --proxy-ca ca.crt',
  ]

  static override args = {
    name: Args.string({description: 'the member cluster: its Cluster object on the host', required: true}),
  }

  static override flags = {
    context: Flags.string({
      description: 'kubeconfig context of the host cluster (default: the current context)',
    }),
    'proxy-address': Flags.string({
      description:
        'address the agent dials the tower proxy at, http(s)://host:port (default: what the host says)',
    }),
    output: Flags.string({description: 'write the manifest to this file (mode 0600) instead of stdout'}),
    runtime: Flags.string({
      description: 'whose agent: ksctl or tower (default: the runtime the host runs; tower with --token)',
      options: [...TUNNEL_RUNTIMES],
    }),
    'proxy-ca': Flags.string({
      description:
        "ksctl's agent: PEM file of the proxy CA (default: tls.crt of the host's Secret ksctl-tower-ca)",
    }),
    'proxy-pin': Flags.string({
      description:
        "ksctl's agent: trust the proxy by the sha256:<hex> pin of its serving key instead of its CA",
    }),
    token: Flags.string({
      description: "the Cluster's spec.connection.token: render without reading any cluster",
      helpGroup: 'OFFLINE',
    }),
    edition: Flags.string({
      description: "with --token: the host's KubeSphere release line, 3 or 4 (default: 4)",
      helpGroup: 'OFFLINE',
    }),
    image: Flags.string({
      description:
        "agent image (default: Tower's: multicluster.agentImage of the host, else kubesphere/tower:v0.2.1; ksctl's: ksctl:<version>)",
      helpGroup: 'AGENT',
    }),
    replicas: Flags.string({
      description: 'agent pods; above 1 they prefer separate nodes and a PodDisruptionBudget keeps one up',
      helpGroup: 'AGENT',
    }),
    'http-proxy': Flags.string({
      description: 'egress proxy the agent reaches the host through (sets HTTP_PROXY, HTTPS_PROXY, NO_PROXY)',
      helpGroup: 'AGENT',
    }),
    'cpu-request': resourceFlag('CPU request', '100m'),
    'cpu-limit': resourceFlag('CPU limit', '1'),
    'memory-request': resourceFlag('memory request', '100M'),
    'memory-limit': resourceFlag('memory limit', '200M'),
  }

  async run(): Promise<AgentRenderResult> {
    const request = parseAgentRenderRequest(this.args.name, this.flags)
    const render = await planAgentRender(request, () => this.clients().forContext(this.flags.context))
    const {settings, objects} = render
    log.info(`runtime ${render.runtime}: ${render.runtimeWhy}`)
    for (const warning of [...request.warnings, ...settings.warnings]) log.warn(warning)
    const manifest = agentManifestYaml(objects)
    const trust =
      render.trust === undefined
        ? ''
        : 'pin' in render.trust
          ? ', trusted by --proxy-pin'
          : request.trust.caPem === undefined
            ? ', trusted by the CA in secret kubesphere-system/ksctl-tower-ca'
            : ', trusted by the CA of --proxy-ca'
    log.info(
      `agent manifest of cluster "${settings.clusterName}" (KubeSphere ${settings.edition}, ${render.runtime === 'ksctl' ? "ksctl's" : "Tower's"} agent): proxy ` +
        `${render.agentAddress} from ${settings.proxyAddressSource}${trust}, image ${settings.image}`,
    )
    const file = request.outputFile
    if (file !== undefined) {
      writePrivateFile(file, manifest, '--output')
      log.info(`wrote it to ${file}, readable only by you: it holds the cluster's agent token`)
      // ksctl's manifest names the namespace on 3.x members too, where it exists: create would stop there.
      const verb = render.runtime === 'ksctl' ? 'apply' : 'create'
      log.info(`apply it on the member: kubectl --context <member-context> ${verb} -f ${shellWord(file)}`)
    } else if (!this.jsonEnabled()) {
      // Not this.print(), which redacts: the token is part of the manifest the user asked for.
      process.stdout.write(manifest)
    }
    return {
      name: settings.clusterName,
      edition: settings.edition,
      ...(settings.context === undefined ? {} : {context: settings.context}),
      proxyAddress: settings.proxyAddress,
      proxyAddressSource: settings.proxyAddressSource,
      runtime: render.runtime,
      agentAddress: render.agentAddress,
      ...(render.trust === undefined ? {} : {proxyTrust: 'pin' in render.trust ? 'pin' : 'ca'}),
      image: settings.image,
      replicas: request.replicas,
      ...(file === undefined ? {objects: revealed(objects)} : {file}),
    }
  }
}

/** A path as a shell word, so the printed command can be pasted as it is. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`
}
