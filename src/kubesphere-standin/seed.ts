import {createHash} from 'node:crypto'
import {setTimeout as delay} from 'node:timers/promises'

import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  loadYaml,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node'
import {dump} from 'js-yaml'

import type {K8sObject} from './fixtures.js'

const NAMESPACE = 'kubesphere-system'
/** Marks a CRD with the hash of the fixture it came from, so an unchanged CRD is kept when a cluster is seeded again. */
const FIXTURE_HASH = 'ksctl.io/fixture-hash'
const CRD_NAMES = ['clusters.cluster.kubesphere.io', 'clusterconfigurations.installer.kubesphere.io']
const WAIT_STEP_MS = 50
const WAIT_LIMIT_MS = 30_000

const customKinds: Record<string, {group: string; version: string; plural: string}> = {
  ClusterConfiguration: {
    group: 'installer.kubesphere.io',
    version: 'v1alpha1',
    plural: 'clusterconfigurations',
  },
  Cluster: {group: 'cluster.kubesphere.io', version: 'v1alpha1', plural: 'clusters'},
}

/**
 * Creates a fixture's objects in the cluster of `config`: its KubeSphere CRDs first, each served before any of its
 * objects is created (a CRD of the same fixture is kept, one that differs is replaced, one the fixture lacks is
 * deleted), then every other object, replacing one that exists. Status is written as the fixture has it.
 */
export async function seedCluster(config: KubeConfig, objects: K8sObject[]): Promise<void> {
  const apis = {
    core: config.makeApiClient(CoreV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    crds: config.makeApiClient(ApiextensionsV1Api),
    objects: KubernetesObjectApi.makeApiClient(config),
  }
  await reconcileCrds(
    apis,
    objects.filter((object) => object.kind === 'CustomResourceDefinition'),
  )
  for (const object of objects) {
    if (object.kind === 'CustomResourceDefinition') continue
    await createOrReplace(apis, object)
  }
}

type Apis = {
  core: CoreV1Api
  custom: CustomObjectsApi
  crds: ApiextensionsV1Api
  objects: KubernetesObjectApi
}

async function reconcileCrds(apis: Apis, wanted: K8sObject[]): Promise<void> {
  for (const name of CRD_NAMES) {
    const want = wanted.find((crd) => crd.metadata.name === name)
    const have = await apis.crds.readCustomResourceDefinition({name}).catch(() => undefined)
    const wantHash =
      want === undefined ? undefined : createHash('sha256').update(JSON.stringify(want)).digest('hex')
    if (
      have !== undefined &&
      wantHash !== undefined &&
      have.metadata?.annotations?.[FIXTURE_HASH] === wantHash
    ) {
      continue
    }
    if (have !== undefined) {
      await ignoreNotFound(apis.crds.deleteCustomResourceDefinition({name}))
      await waitFor(
        `CRD ${name} to be deleted`,
        async () =>
          await apis.crds.readCustomResourceDefinition({name}).then(
            () => false,
            () => true,
          ),
      )
    }
    if (want !== undefined) {
      // Typed clients serialize from client-node's model property names; a CRD read from YAML has the wire
      // names (x-kubernetes-preserve-unknown-fields), which would be dropped unless deserialized first.
      const stamped = {...want, metadata: {...want.metadata, annotations: {[FIXTURE_HASH]: wantHash ?? ''}}}
      await apis.objects.create(loadYaml<KubernetesObject>(dump(stamped)))
      const spec = want.spec as {group: string; names: {plural: string}; versions: {name: string}[]}
      await waitFor(`CRD ${name} to be served`, async () =>
        apis.custom
          .listClusterCustomObject({
            group: spec.group,
            version: spec.versions[0]?.name ?? 'v1alpha1',
            plural: spec.names.plural,
          })
          .then(
            () => true,
            () => false,
          ),
      )
    }
  }
}

async function createOrReplace(apis: Apis, object: K8sObject): Promise<void> {
  const custom = customKinds[object.kind]
  if (custom !== undefined) {
    // KubernetesObjectApi serializes kinds it has no model for as bare objects, dropping spec and status.
    const namespace = object.metadata.namespace
    const name = object.metadata.name
    try {
      await (namespace === undefined
        ? apis.custom.createClusterCustomObject({...custom, body: object})
        : apis.custom.createNamespacedCustomObject({...custom, namespace, body: object}))
    } catch (error) {
      // A running stand-in's cluster controller may have created the host's Cluster meanwhile: the fixture's wins.
      if ((error as {code?: number}).code !== 409) throw error
      const existing = (await (namespace === undefined
        ? apis.custom.getClusterCustomObject({...custom, name})
        : apis.custom.getNamespacedCustomObject({...custom, namespace, name}))) as KubernetesObject
      const body = {
        ...object,
        metadata: {...object.metadata, resourceVersion: existing.metadata?.resourceVersion},
      }
      await (namespace === undefined
        ? apis.custom.replaceClusterCustomObject({...custom, name, body})
        : apis.custom.replaceNamespacedCustomObject({...custom, namespace, name, body}))
    }
    return
  }
  const {status, ...spec} = object
  const existing = await apis.objects
    .read(spec as KubernetesObject & {metadata: {name: string}})
    .catch(() => undefined)
  if (existing === undefined) {
    await apis.objects.create({
      ...spec,
      ...(hasStatusSubresource(object) ? {} : status === undefined ? {} : {status}),
    })
  } else {
    await apis.objects.replace({
      ...spec,
      metadata: {...spec.metadata, resourceVersion: existing.metadata?.resourceVersion},
    })
  }
  if (object.kind === 'Service' && status !== undefined) {
    const current = await apis.core.readNamespacedService({
      namespace: object.metadata.namespace ?? NAMESPACE,
      name: object.metadata.name,
    })
    await apis.core.replaceNamespacedServiceStatus({
      namespace: object.metadata.namespace ?? NAMESPACE,
      name: object.metadata.name,
      body: {...current, status: status as object},
    })
  }
}

function hasStatusSubresource(object: K8sObject): boolean {
  return object.kind === 'Service' || object.kind === 'Deployment'
}

export async function ignoreNotFound(request: Promise<unknown>): Promise<void> {
  try {
    await request
  } catch (error) {
    if ((error as {code?: number}).code !== 404) throw error
  }
}

/** Polls `check` until it holds; the error names `what` once `limitMs` is over. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  limitMs = WAIT_LIMIT_MS,
): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`)
    await delay(WAIT_STEP_MS)
  }
}
