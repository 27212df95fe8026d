import type {V1ConfigMap} from '@kubernetes/client-node'
import {isMap, isScalar, parseDocument} from 'yaml'

import {KsctlError} from '../errors.js'
import {decodeSecret, type ClusterClient, type DecodedSecret} from '../k8s/cluster-client.js'
import type {ObjectEdit} from '../k8s/object-edit.js'
import {ClusterConfigurationResource, resourceName, type CustomObject} from '../k8s/resources.js'
import {parseKubeSphereConfig} from './config.js'
import {
  CLUSTER_CONNECTION_SECRET_KEY,
  INSTALLER_CONFIGURATION_NAME,
  KUBESPHERE_CONFIG_KEY,
  KUBESPHERE_CONFIG_NAME,
  KUBESPHERE_NAMESPACE,
  TOWER_CONNECTION_SECRET_NAME,
} from './constants.js'

export type InstallerConfiguration = CustomObject & {spec?: Record<string, unknown>}

/**
 * An edit of the ks-installer ClusterConfiguration's spec (3.x). Only the fields `mutateSpec` sets change;
 * the installer re-runs on any spec change, so an unchanged spec is never written.
 */
export function installerSpecEdit(
  client: ClusterClient,
  summary: string,
  mutateSpec: (spec: Record<string, unknown>) => void,
): ObjectEdit<InstallerConfiguration> {
  const object = {
    resource: resourceName(ClusterConfigurationResource),
    group: ClusterConfigurationResource.group,
    name: INSTALLER_CONFIGURATION_NAME,
    namespace: KUBESPHERE_NAMESPACE,
  }
  return {
    client,
    object,
    summary,
    read: () =>
      client.findCustomObject<InstallerConfiguration>(
        ClusterConfigurationResource,
        INSTALLER_CONFIGURATION_NAME,
        KUBESPHERE_NAMESPACE,
      ),
    change(current) {
      if (current === undefined)
        throw missing(client, object, 'is KubeSphere 3.x installed with ks-installer?')
      current.spec ??= {}
      mutateSpec(current.spec)
      return current
    },
    write: (desired, _current, dryRun) =>
      client.replaceCustomObject(ClusterConfigurationResource, desired, dryRun),
  }
}

/** One value to set in an embedded YAML document, by its path of mapping keys. */
export interface YamlSetting {
  path: string[]
  value: string
}

/**
 * An edit of `kubesphere.yaml` in the kubesphere-config ConfigMap. Only the settings change: the rest of the
 * text keeps its comments, key order and quoting, and the ConfigMap's other keys stay.
 */
export function kubesphereConfigEdit(
  client: ClusterClient,
  summary: string,
  settings: YamlSetting[],
): ObjectEdit<V1ConfigMap> {
  const object = {resource: 'configmaps', name: KUBESPHERE_CONFIG_NAME, namespace: KUBESPHERE_NAMESPACE}
  return {
    client,
    object,
    summary,
    read: () => client.findConfigMap(KUBESPHERE_NAMESPACE, KUBESPHERE_CONFIG_NAME),
    change(current) {
      if (current === undefined) throw missing(client, object, 'is KubeSphere installed?')
      const text = current.data?.[KUBESPHERE_CONFIG_KEY]
      // Validates the text and registers its jwtSecret for redaction before any diff can show it.
      parseKubeSphereConfig(text, client.context)
      const edited = setInYaml(text ?? '', settings, (problem) =>
        notAMapping(client, object, KUBESPHERE_CONFIG_KEY, problem),
      )
      if (edited === undefined) return current
      current.data = {...current.data, [KUBESPHERE_CONFIG_KEY]: edited}
      return current
    },
    write: (desired, _current, dryRun) => client.replaceConfigMap(desired, dryRun),
  }
}

/**
 * An edit of the settings in the 4.x tower connection Secret (`configuration.yaml`), keeping every other
 * key, as KubeSphere's guide asks. Only used when that Secret exists.
 */
export function towerConnectionSecretEdit(
  client: ClusterClient,
  summary: string,
  settings: YamlSetting[],
): ObjectEdit<DecodedSecret> {
  const object = {resource: 'secrets', name: TOWER_CONNECTION_SECRET_NAME, namespace: KUBESPHERE_NAMESPACE}
  return {
    client,
    object,
    summary,
    read: () => client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME),
    change(current) {
      if (current === undefined) throw missing(client, object, 'is the tower extension installed?')
      const edited = setInYaml(current.data[CLUSTER_CONNECTION_SECRET_KEY] ?? '', settings, (problem) =>
        notAMapping(client, object, CLUSTER_CONNECTION_SECRET_KEY, problem),
      )
      if (edited === undefined) return current
      current.data = {...current.data, [CLUSTER_CONNECTION_SECRET_KEY]: edited}
      return current
    },
    write: async (desired, _current, dryRun) => decodeSecret(await client.replaceSecret(desired, dryRun)),
  }
}

/**
 * How KubeSphere's own renderings lay YAML out (Go's yaml and ks-installer's templates): sequences flush with
 * their key, no folding of long lines. Only the nodes ksctl adds are laid out anew; the others keep their
 * comments, order and quoting.
 */
const kubernetesLayout = {indentSeq: false, lineWidth: 0} as const

/**
 * Sets each value at its path in YAML text, through the text's own document, so that comments, key order and
 * quoting survive (js-yaml would drop comments and requote). Mappings on the way are created; a path through
 * a value that is not a mapping is an error made by `fail`. Returns undefined when every value is already set.
 */
export function setInYaml(
  text: string,
  settings: YamlSetting[],
  fail: (problem: string) => KsctlError,
): string | undefined {
  const document = parseDocument(text)
  const [error] = document.errors
  if (error !== undefined) throw fail(`it is not valid YAML: ${error.message}`)
  const root = document.contents
  if (root !== null && !isMap(root)) throw fail('it is not a YAML mapping')
  let changed = false
  for (const {path, value} of settings) {
    if (document.getIn(path) === value) continue
    for (let depth = 1; depth < path.length; depth++) {
      const above = path.slice(0, depth)
      const node = document.getIn(above, true)
      if (node === undefined || isMap(node)) continue
      // `multicluster:` with nothing after it is a null, which a mapping may replace.
      if (!isScalar(node) || node.value !== null) throw fail(`${above.join('.')} is not a mapping`)
      document.setIn(above, document.createNode({}))
    }
    document.setIn(path, value)
    changed = true
  }
  return changed ? document.toString(kubernetesLayout) : undefined
}

/** Sets `value` at `path` in a nested object, creating the mappings on the way. */
export function setIn(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  const last = path.at(-1)
  if (last !== undefined) node[last] = value
}

function notAMapping(
  client: ClusterClient,
  object: {resource: string; name: string; namespace: string},
  key: string,
  problem: string,
) {
  return new KsctlError(
    `${object.resource} ${object.namespace}/${object.name} key ${key} cannot be edited in context "${client.context}": ${problem}`,
    {
      code: 'PRECONDITION_FAILED',
      context: client.context,
      object,
      suggestions: [
        `inspect it: kubectl --context ${client.context} -n ${object.namespace} get ${object.resource} ${object.name} -o yaml`,
      ],
    },
  )
}

function missing(
  client: ClusterClient,
  object: {resource: string; name: string; namespace: string},
  hint: string,
) {
  return new KsctlError(
    `${object.resource} ${object.namespace}/${object.name} not found in context "${client.context}"`,
    {
      code: 'NOT_FOUND',
      context: client.context,
      object,
      suggestions: [hint, `check with: ksctl info --context ${client.context}`],
    },
  )
}
