import {existsSync} from 'node:fs'
import {homedir} from 'node:os'
import {delimiter, join} from 'node:path'

import {KubeConfig, type Cluster, type Context, type User} from '@kubernetes/client-node'

import {KsctlError} from '../errors.js'
import {redact} from '../redact.js'
import {LimitedKubeConfig} from './request-limits.js'

export interface KubeconfigSource {
  /** `--kubeconfig`: exactly this file, as kubectl does (no merging). */
  kubeconfig?: string | undefined
  /** The environment to read `KUBECONFIG` and `HOME` from; tests pass their own. */
  env?: NodeJS.ProcessEnv
  /** With no kubeconfig anywhere, use the in-cluster service account (when running in a pod). */
  inClusterFallback?: boolean
}

/**
 * All the clusters, users and contexts the user's kubeconfig files define, merged the way kubectl merges
 * a `KUBECONFIG` list: files are read in order, missing ones are skipped, the first file to define a
 * name wins, and the first `current-context` wins. Relative file paths are resolved per file.
 */
export class KubeconfigSet {
  private constructor(
    readonly files: string[],
    readonly clusters: Cluster[],
    readonly users: User[],
    readonly contexts: Context[],
    readonly currentContext: string | undefined,
  ) {}

  static load(source: KubeconfigSource = {}): KubeconfigSet {
    const env = source.env ?? process.env
    if (
      source.inClusterFallback === true &&
      source.kubeconfig === undefined &&
      env.KUBECONFIG === undefined
    ) {
      const home = join(env.HOME ?? homedir(), '.kube', 'config')
      if (!existsSync(home) && env.KUBERNETES_SERVICE_HOST !== undefined) return KubeconfigSet.inCluster()
    }
    const files = kubeconfigFiles(source)
    const clusters = new Map<string, Cluster>()
    const users = new Map<string, User>()
    const contexts = new Map<string, Context>()
    let currentContext: string | undefined
    for (const file of files) {
      const single = parseFile(file)
      for (const cluster of single.clusters)
        if (!clusters.has(cluster.name)) clusters.set(cluster.name, cluster)
      for (const user of single.users) if (!users.has(user.name)) users.set(user.name, user)
      for (const context of single.contexts)
        if (!contexts.has(context.name)) contexts.set(context.name, context)
      if (currentContext === undefined && single.currentContext !== '') currentContext = single.currentContext
    }
    return new KubeconfigSet(
      files,
      [...clusters.values()],
      [...users.values()],
      [...contexts.values()],
      currentContext,
    )
  }

  /** The pod's own service account, for processes that run inside the cluster (the tower proxy). */
  static inCluster(): KubeconfigSet {
    const config = new KubeConfig()
    config.loadFromCluster()
    return new KubeconfigSet(
      ['(in-cluster service account)'],
      config.clusters,
      config.users,
      config.contexts,
      config.currentContext,
    )
  }

  contextNames(): string[] {
    return this.contexts.map((context) => context.name)
  }

  /** The context a command runs against: the flag's value, else the kubeconfig's current context. */
  resolveContext(requested: string | undefined, flag = '--context'): string {
    const name = requested ?? this.currentContext
    if (name === undefined) {
      throw new KsctlError(`no context given and no current-context in ${this.describeFiles()}`, {
        code: 'CONTEXT_NOT_FOUND',
        suggestions: [`pass ${flag} with one of: ${this.contextNames().join(', ') || '(none defined)'}`],
      })
    }
    return name
  }

  /**
   * A KubeConfig of its own for one context. client-node reads the *current* context's credentials on
   * every request, so sharing one instance between two clusters could send one cluster's credentials to
   * the other; each context therefore gets a fresh instance that is never switched. Its requests obey the
   * time-out and abort signal `ClusterClient.call` gives them.
   */
  forContext(name: string): KubeConfig {
    const context = this.contexts.find((candidate) => candidate.name === name)
    if (context === undefined) {
      throw new KsctlError(`context "${name}" not found in ${this.describeFiles()}`, {
        code: 'CONTEXT_NOT_FOUND',
        context: name,
        suggestions: [
          `available contexts: ${this.contextNames().join(', ') || '(none)'}`,
          'list them with: kubectl config get-contexts',
        ],
      })
    }
    const cluster = this.clusters.find((candidate) => candidate.name === context.cluster)
    if (cluster === undefined) {
      throw new KsctlError(`context "${name}" refers to cluster "${context.cluster}", which is not defined`, {
        code: 'KUBECONFIG_MALFORMED',
        context: name,
        suggestions: [`fix the kubeconfig (${this.describeFiles()}): add cluster "${context.cluster}"`],
      })
    }
    const user = this.users.find((candidate) => candidate.name === context.user)
    if (user === undefined && context.user !== '') {
      throw new KsctlError(`context "${name}" refers to user "${context.user}", which is not defined`, {
        code: 'KUBECONFIG_MALFORMED',
        context: name,
        suggestions: [`fix the kubeconfig (${this.describeFiles()}): add user "${context.user}"`],
      })
    }
    const config = new LimitedKubeConfig()
    config.loadFromOptions({
      clusters: [cluster],
      users: user === undefined ? [] : [user],
      contexts: [context],
      currentContext: name,
    })
    return config
  }

  private describeFiles(): string {
    return this.files.length === 1
      ? `kubeconfig ${this.files[0] ?? ''}`
      : `kubeconfig files ${this.files.join(', ')}`
  }
}

function kubeconfigFiles(source: KubeconfigSource): string[] {
  const env = source.env ?? process.env
  if (source.kubeconfig !== undefined) {
    if (!existsSync(source.kubeconfig)) {
      throw new KsctlError(`kubeconfig ${source.kubeconfig} does not exist`, {
        code: 'KUBECONFIG_NOT_FOUND',
        suggestions: ['check the --kubeconfig path'],
      })
    }
    return [source.kubeconfig]
  }
  const fromEnv = (env.KUBECONFIG ?? '').split(delimiter).filter((file) => file !== '')
  if (fromEnv.length > 0) {
    const present = fromEnv.filter((file) => existsSync(file))
    if (present.length === 0) {
      throw new KsctlError(`none of the files in KUBECONFIG exists (${fromEnv.join(delimiter)})`, {
        code: 'KUBECONFIG_NOT_FOUND',
        suggestions: ['set KUBECONFIG to existing files, or pass --kubeconfig'],
      })
    }
    return present
  }
  const home = join(env.HOME ?? homedir(), '.kube', 'config')
  if (!existsSync(home)) {
    throw new KsctlError(`no kubeconfig: ${home} does not exist and KUBECONFIG is not set`, {
      code: 'KUBECONFIG_NOT_FOUND',
      suggestions: ['pass --kubeconfig FILE, or set KUBECONFIG'],
    })
  }
  return [home]
}

function parseFile(file: string): KubeConfig {
  const config = new KubeConfig()
  try {
    config.loadFromFile(file)
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error)
    throw new KsctlError(`kubeconfig ${file} is malformed: ${redact(reason ?? '')}`, {
      code: 'KUBECONFIG_MALFORMED',
      cause: error,
      suggestions: [`check it with: kubectl config view --kubeconfig ${file}`],
    })
  }
  return config
}
