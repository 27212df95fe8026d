import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {dump} from 'js-yaml'

import {
  buildFixture,
  type FixtureName,
  type FixtureOptions,
  type K8sObject,
} from '../../src/kubesphere-standin/fixtures.js'
import {restPath} from '../fixtures/kubesphere/rest-path.js'
import {FakeApiServer} from './fake-apiserver.js'
import {tempDir} from './temp-dir.js'

export interface FakeClusters {
  host: FakeApiServer
  member: FakeApiServer
  /** A kubeconfig with contexts `host` and `member`, each with its own server and bearer token. */
  kubeconfigPath: string
  stop(): Promise<void>
}

export const HOST_TOKEN = 'host-bearer-token-0123456789'
export const MEMBER_TOKEN = 'member-bearer-token-9876543210'

/** Two fake API servers, host and member, and one kubeconfig naming both: the unit tests' two clusters. */
export async function startFakeClusters(): Promise<FakeClusters> {
  const host = await new FakeApiServer('host', HOST_TOKEN).start()
  const member = await new FakeApiServer('member', MEMBER_TOKEN).start()
  const dir = tempDir('ksctl-unit-')
  const kubeconfigPath = join(dir, 'kubeconfig')
  writeFileSync(
    kubeconfigPath,
    kubeconfigYaml({host: [host.url, HOST_TOKEN], member: [member.url, MEMBER_TOKEN]}, host.caPem),
  )
  return {
    host,
    member,
    kubeconfigPath,
    async stop() {
      await Promise.all([host.stop(), member.stop()])
    },
  }
}

export function kubeconfigYaml(
  contexts: Record<string, [server: string, token: string]>,
  caPem: string,
  current = 'host',
): string {
  const names = Object.keys(contexts)
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': current,
    clusters: names.map((name) => ({
      name,
      cluster: {
        server: contexts[name]?.[0],
        'certificate-authority-data': Buffer.from(caPem).toString('base64'),
      },
    })),
    users: names.map((name) => ({name: `${name}-user`, user: {token: contexts[name]?.[1]}})),
    contexts: names.map((name) => ({name, context: {cluster: name, user: `${name}-user`}})),
  })
}

/** Seeds a fake with a fixture, storing objects as the real API server would (Secret data base64). */
export function seedFake(fake: FakeApiServer, fixture: FixtureName, options: FixtureOptions = {}): void {
  fake.put('/api/v1/namespaces/kube-system', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {name: 'kube-system', uid: `${fake.name}-kube-system-uid`},
  })
  for (const object of buildFixture(fixture, options)) fake.put(restPath(object), asStored(object))
}

function asStored(object: K8sObject): K8sObject {
  if (object.kind !== 'Secret' || object.stringData === undefined) return object
  const {stringData, ...rest} = object
  const data = Object.fromEntries(
    Object.entries(stringData as Record<string, string>).map(([key, value]) => [
      key,
      Buffer.from(value).toString('base64'),
    ]),
  )
  return {...rest, data}
}
