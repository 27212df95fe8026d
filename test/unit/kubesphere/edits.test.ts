import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {load} from 'js-yaml'

import {KsctlError} from '../../../src/errors.js'
import {ClusterClients} from '../../../src/k8s/clients.js'
import {applyEdit} from '../../../src/k8s/object-edit.js'
import {kubesphereConfigEdit, setInYaml} from '../../../src/kubesphere/edits.js'
import type {K8sObject} from '../../../src/kubesphere-standin/fixtures.js'
import {startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

const configPath = '/api/v1/namespaces/kubesphere-system/configmaps/kubesphere-config'
const rendered = path.join(import.meta.dirname, '..', '..', 'fixtures', 'kubesphere', 'rendered')

/** The kubesphere-config ConfigMap as ks-installer 3.4.1 renders it for a host (see rendered/README.md). */
function publishedConfigMap(): K8sObject & {data: Record<string, string>} {
  return load(
    readFileSync(path.join(rendered, 'kubesphere-config-v3.4.1-host.yaml'), 'utf8'),
  ) as K8sObject & {
    data: Record<string, string>
  }
}

/** Comments an operator adds by hand, in the places they usually go. */
function withOperatorComments(text: string): string {
  return text
    .replace('multicluster:\n', '# Managed by the platform team: ask before changing.\nmulticluster:\n')
    .replace('  clusterRole: host\n', '  clusterRole: host   # set by ks-installer\n')
    .replace('  tag: v1.3.1\n', '  tag: v1.3.1\n  # namespace is the default one\n')
}

describe('edits of embedded YAML', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const host = () => ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')

  it("keeps the published kubesphere-config's comments, key order and quoting, adding one line", async () => {
    const configMap = publishedConfigMap()
    const before = withOperatorComments(configMap.data['kubesphere.yaml'] ?? '')
    clusters.host.put(configPath, {...configMap, data: {'kubesphere.yaml': before, other: 'kept'}})
    const outcome = await applyEdit(
      kubesphereConfigEdit(host(), 'set proxyPublishAddress', [
        {path: ['multicluster', 'proxyPublishAddress'], value: 'http://203.0.113.10:30721'},
      ]),
    )
    assert.equal(outcome.changed, true)
    const written = clusters.host.get(configPath)?.data as Record<string, string>
    const expected = before
      .replace(
        '  proxyPublishService: tower.kubesphere-system.svc\n',
        '  proxyPublishService: tower.kubesphere-system.svc\n  proxyPublishAddress: http://203.0.113.10:30721\n',
      )
      // The one layout change: the yaml package keeps one blank line of a run (ks-installer's template leaves two).
      .replace('\n\n\nterminal:', '\n\nterminal:')
      // ...and writes a trailing comment one space after its value.
      .replace('clusterRole: host   # set', 'clusterRole: host # set')
    assert.equal(written['kubesphere.yaml'], expected)
    assert.equal(written.other, 'kept')
    assert.match(expected, /^ {2}jwtSecret: "hOstJwtS3cretF0rKsctlTests0123ab"$/m, 'double quotes kept')
    assert.match(expected, /^ {6}- '\*'$/m, 'single quotes and flush sequences kept')
    assert.match(expected, /^ {2}multipleLogin: True$/m, 'a boolean written as ks-installer writes it')
  })

  it('writes nothing when the value is already set', async () => {
    const configMap = publishedConfigMap()
    clusters.host.put(configPath, configMap)
    const outcome = await applyEdit(
      kubesphereConfigEdit(host(), 'set proxyPublishService', [
        {path: ['multicluster', 'proxyPublishService'], value: 'tower.kubesphere-system.svc'},
      ]),
    )
    assert.equal(outcome.changed, false)
    assert.deepEqual(clusters.host.writes(), [])
  })

  it('replaces a value in place, keeping its quotes and its comment', () => {
    const text = 'multicluster:\n  proxyPublishAddress: "http://old:1" # the LB\n  agentImage: x\n'
    const edited = setInYaml(
      text,
      [{path: ['multicluster', 'proxyPublishAddress'], value: 'http://new:2'}],
      fail,
    )
    assert.equal(edited, 'multicluster:\n  proxyPublishAddress: "http://new:2" # the LB\n  agentImage: x\n')
  })

  it('creates missing mappings, and fills an empty one', () => {
    const setting = [{path: ['multicluster', 'proxyPublishAddress'], value: 'http://a:1'}]
    assert.equal(
      setInYaml('# empty\n', setting, fail),
      '# empty\n\nmulticluster:\n  proxyPublishAddress: http://a:1\n',
    )
    assert.equal(
      setInYaml('multicluster:\nother: 1\n', setting, fail),
      'multicluster:\n  proxyPublishAddress: http://a:1\nother: 1\n',
    )
  })

  it('refuses a path through a value that is not a mapping, and text that is not YAML', () => {
    const setting = [{path: ['multicluster', 'proxyPublishAddress'], value: 'http://a:1'}]
    assert.throws(() => setInYaml('multicluster: true\n', setting, fail), /multicluster is not a mapping/)
    assert.throws(() => setInYaml('- a\n', setting, fail), /it is not a YAML mapping/)
    assert.throws(() => setInYaml('a: [\n', setting, fail), /it is not valid YAML/)
  })
})

function fail(problem: string): KsctlError {
  return new KsctlError(problem, {code: 'PRECONDITION_FAILED'})
}
