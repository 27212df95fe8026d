import type {V1ConfigMap} from '@kubernetes/client-node'
import {dump, load} from 'js-yaml'

import {KsctlError} from '../errors.js'
import {decodeSecret, type ClusterClient, type DecodedSecret} from '../k8s/cluster-client.js'
import type {ObjectEdit} from '../k8s/object-edit.js'
import {ClusterConfigurationResource, resourceName, type CustomObject} from '../k8s/resources.js'
import {parseKubeSphereConfig, type KubeSphereConfig} from './config.js'
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

/**
 * An edit of `kubesphere.yaml` in the kubesphere-config ConfigMap. Other keys of the embedded YAML and
 * of the ConfigMap survive; YAML comments do not (the file is parsed and dumped again).
 */
export function kubesphereConfigEdit(
  client: ClusterClient,
  summary: string,
  mutate: (config: KubeSphereConfig) => void,
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
      const config = parseKubeSphereConfig(text, client.context)
      const before = JSON.stringify(config)
      mutate(config)
      if (JSON.stringify(config) === before) return current
      current.data = {...current.data, [KUBESPHERE_CONFIG_KEY]: dump(config, {lineWidth: -1, noRefs: true})}
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
  mutate: (settings: Record<string, unknown>) => void,
): ObjectEdit<DecodedSecret> {
  const object = {resource: 'secrets', name: TOWER_CONNECTION_SECRET_NAME, namespace: KUBESPHERE_NAMESPACE}
  return {
    client,
    object,
    summary,
    read: () => client.findSecret(KUBESPHERE_NAMESPACE, TOWER_CONNECTION_SECRET_NAME),
    change(current) {
      if (current === undefined) throw missing(client, object, 'is the tower extension installed?')
      const parsed: unknown = load(current.data[CLUSTER_CONNECTION_SECRET_KEY] ?? '') ?? {}
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new KsctlError(
          `secret ${KUBESPHERE_NAMESPACE}/${TOWER_CONNECTION_SECRET_NAME} key ${CLUSTER_CONNECTION_SECRET_KEY} ` +
            `is not a YAML mapping in context "${client.context}"`,
          {code: 'PRECONDITION_FAILED', context: client.context, object},
        )
      }
      const settings = parsed as Record<string, unknown>
      const before = JSON.stringify(settings)
      mutate(settings)
      if (JSON.stringify(settings) === before) return current
      current.data = {...current.data, [CLUSTER_CONNECTION_SECRET_KEY]: dump(settings, {lineWidth: -1})}
      return current
    },
    write: async (desired, _current, dryRun) => decodeSecret(await client.replaceSecret(desired, dryRun)),
  }
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
