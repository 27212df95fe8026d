import {Args, Flags} from '@oclif/core'

import {ClusterCommand} from '../../src/cli/cluster-command.js'
import {parseAgentRenderRequest} from '../../src/kubesphere/agent-input.js'
import {
  agentManifestYaml,
  renderAgentManifest,
  type ManifestObject,
} from '../../src/kubesphere/agent-manifest.js'
import {readAgentSettings} from '../../src/kubesphere/agent-settings.js'
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
    "Renders locally exactly what KubeSphere's own endpoint serves for a proxy cluster (3.x: the Deployment cluster-agent; 4.x: also a namespace, a ServiceAccount tower and its cluster-admin binding), from what the host holds: the Cluster's connection token, the proxy address (proxyPublishAddress, else the tower LoadBalancer) and the agent image. No KubeSphere login is needed.",
    'With --token and --proxy-address it reads no cluster and no kubeconfig.',
    "The manifest holds the cluster's agent token: --output writes it to a file only you can read. The AGENT flags change KubeSphere's manifest; without them it is byte for byte KubeSphere's. More than one replica needs a tower proxy that accepts several agents for one cluster.",
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> member1 --context host --output member1-agent.yaml',
    '<%= config.bin %> <%= command.id %> member1 --context host | kubectl --context member1 create -f -',
    '<%= config.bin %> <%= command.id %> member1 --token <token> --proxy-address http://192.0.2.10:8080 --edition 3',
    '<%= config.bin %> <%= command.id %> member1 --replicas 2 --http-proxy http://proxy.example.com:3128',
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
    token: Flags.string({
      description: "the Cluster's spec.connection.token: render without reading any cluster",
      helpGroup: 'OFFLINE',
    }),
    edition: Flags.string({
      description: "with --token: the host's KubeSphere release line, 3 or 4 (default: 4)",
      helpGroup: 'OFFLINE',
    }),
    image: Flags.string({
      description: 'agent image (default: multicluster.agentImage of the host, else kubesphere/tower:v0.2.1)',
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
    const settings =
      request.offline ??
      (await readAgentSettings(
        this.clients().forContext(this.flags.context),
        request.clusterName,
        request.overrides,
      ))
    for (const warning of [...request.warnings, ...settings.warnings]) log.warn(warning)
    const objects = renderAgentManifest({
      edition: settings.edition,
      clusterName: settings.clusterName,
      token: settings.token,
      proxyAddress: settings.proxyAddress,
      image: settings.image,
      replicas: request.replicas,
      httpProxy: request.httpProxy,
      resources: request.resources,
    })
    const manifest = agentManifestYaml(objects)
    log.info(
      `agent manifest of cluster "${settings.clusterName}" (KubeSphere ${settings.edition}): proxy ` +
        `${settings.proxyAddress} from ${settings.proxyAddressSource}, image ${settings.image}`,
    )
    const file = request.outputFile
    if (file !== undefined) {
      writePrivateFile(file, manifest, '--output')
      log.info(`wrote it to ${file}, readable only by you: it holds the cluster's agent token`)
      log.info(`apply it on the member: kubectl --context <member-context> create -f ${shellWord(file)}`)
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
