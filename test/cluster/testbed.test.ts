import assert from 'node:assert/strict'
import {
  ApiException,
  AuthenticationV1Api,
  CoreV1Api,
  KubeConfig,
  VersionApi,
  type ApiConstructor,
  type ApiType,
} from '@kubernetes/client-node'
import {pinnedModule} from '../../src/local-cluster/go-build.js'
import {testBed} from './hooks.js'

function clientFor<T extends ApiType>(context: string, api: ApiConstructor<T>): T {
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromFile(testBed().kubeconfigPath)
  kubeConfig.setCurrentContext(context)
  return kubeConfig.makeApiClient(api)
}

async function rejectionStatus(promise: Promise<unknown>): Promise<number> {
  try {
    await promise
  } catch (error) {
    if (error instanceof ApiException) return error.code
    throw error
  }
  assert.fail('the request was allowed')
}

describe('test bed', function () {
  it('runs the pinned kube-apiserver version in both clusters', async function () {
    const pinned = pinnedModule().kubernetes
    assert.equal(testBed().versions.kubeApiserver, pinned)
    for (const context of ['host', 'member']) {
      const version = await clientFor(context, VersionApi).getCode()
      assert.equal(version.gitVersion, pinned, `version reported through context ${context}`)
    }
  })

  it('runs two distinct clusters', async function () {
    const [hostKubeSystem, memberKubeSystem] = await Promise.all(
      ['host', 'member'].map((context) => clientFor(context, CoreV1Api).readNamespace({name: 'kube-system'})),
    )
    assert.ok(hostKubeSystem?.metadata?.uid)
    assert.notEqual(hostKubeSystem.metadata.uid, memberKubeSystem?.metadata?.uid)
    assert.notEqual(testBed().clusters.host.url, testBed().clusters.member.url)
  })

  it('limits the limited user to reading namespaces and configmaps', async function () {
    for (const context of ['host-limited', 'member-limited']) {
      const core = clientFor(context, CoreV1Api)
      const configMaps = await core.listNamespacedConfigMap({namespace: 'kube-system'})
      assert.ok(Array.isArray(configMaps.items))
      await core.readNamespace({name: 'default'})
      assert.equal(await rejectionStatus(core.listNamespacedSecret({namespace: 'default'})), 403)
      assert.equal(
        await rejectionStatus(
          core.createNamespacedConfigMap({namespace: 'default', body: {metadata: {name: 'x'}}}),
        ),
        403,
      )
    }
  })

  it('issues service-account tokens that the cluster accepts', async function () {
    const core = clientFor('host', CoreV1Api)
    const name = `testbed-${Date.now()}`
    await core.createNamespacedServiceAccount({namespace: 'default', body: {metadata: {name}}})
    try {
      const tokenRequest = await core.createNamespacedServiceAccountToken({
        name,
        namespace: 'default',
        body: {spec: {audiences: [], expirationSeconds: 600}},
      })
      const token = tokenRequest.status?.token
      assert.ok(token, 'TokenRequest returned no token')
      const review = await clientFor('host', AuthenticationV1Api).createTokenReview({body: {spec: {token}}})
      assert.equal(review.status?.authenticated, true, review.status?.error)
      assert.equal(review.status?.user?.username, `system:serviceaccount:default:${name}`)
    } finally {
      await core.deleteNamespacedServiceAccount({name, namespace: 'default'})
    }
  })
})
