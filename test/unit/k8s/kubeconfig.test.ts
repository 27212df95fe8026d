import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {dump} from 'js-yaml'

import {KsctlError} from '../../../src/errors.js'
import {KubeconfigSet} from '../../../src/k8s/kubeconfig.js'
import {tempDir} from '../../helpers/temp-dir.js'

function kubeconfig(options: {
  clusters: Record<string, string>
  contexts: Record<string, string>
  current?: string
}) {
  return dump({
    apiVersion: 'v1',
    kind: 'Config',
    ...(options.current === undefined ? {} : {'current-context': options.current}),
    clusters: Object.entries(options.clusters).map(([name, server]) => ({
      name,
      cluster: {server, 'certificate-authority': 'ca.crt'},
    })),
    users: Object.keys(options.contexts).map((name) => ({
      name: `${name}-user`,
      user: {token: `${name}-token`},
    })),
    contexts: Object.entries(options.contexts).map(([name, cluster]) => ({
      name,
      context: {cluster, user: `${name}-user`},
    })),
  })
}

describe('kubeconfig loading', () => {
  let dir: string

  beforeEach(() => {
    dir = tempDir('ksctl-kubeconfig-')
  })

  it('merges a KUBECONFIG list as kubectl does: first definition and first current-context win, missing files skipped', () => {
    mkdirSync(join(dir, 'a'))
    const first = join(dir, 'a', 'first')
    const second = join(dir, 'second')
    writeFileSync(first, kubeconfig({clusters: {shared: 'https://first:6443'}, contexts: {one: 'shared'}}))
    writeFileSync(
      second,
      kubeconfig({
        clusters: {shared: 'https://second:6443', own: 'https://own:6443'},
        contexts: {one: 'own', two: 'own'},
        current: 'two',
      }),
    )
    const set = KubeconfigSet.load({env: {KUBECONFIG: [first, join(dir, 'missing'), second].join(':')}})
    assert.deepEqual(set.contextNames(), ['one', 'two'])
    assert.equal(set.currentContext, 'two')
    const one = set.forContext('one')
    assert.equal(one.getCurrentCluster()?.server, 'https://first:6443')
    assert.equal(one.getCurrentCluster()?.caFile, join(dir, 'a', 'ca.crt'))
    assert.equal(set.forContext('two').getCurrentCluster()?.caFile, join(dir, 'ca.crt'))
  })

  it('uses only the --kubeconfig file when given, whatever KUBECONFIG says', () => {
    const only = join(dir, 'only')
    writeFileSync(only, kubeconfig({clusters: {c: 'https://c:6443'}, contexts: {solo: 'c'}, current: 'solo'}))
    const set = KubeconfigSet.load({kubeconfig: only, env: {KUBECONFIG: '/nonexistent'}})
    assert.deepEqual(set.contextNames(), ['solo'])
  })

  it('builds a separate KubeConfig per context, each with its own current context', () => {
    const file = join(dir, 'config')
    writeFileSync(
      file,
      kubeconfig({clusters: {h: 'https://h:6443', m: 'https://m:6443'}, contexts: {host: 'h', member: 'm'}}),
    )
    const set = KubeconfigSet.load({kubeconfig: file})
    const host = set.forContext('host')
    const member = set.forContext('member')
    assert.notEqual(host, member)
    assert.equal(host.getCurrentUser()?.token, 'host-token')
    assert.equal(member.getCurrentUser()?.token, 'member-token')
    assert.equal(host.getCurrentContext(), 'host')
  })

  const failures: [string, () => void, string, RegExp][] = [
    [
      'a missing --kubeconfig file',
      () => KubeconfigSet.load({kubeconfig: '/nonexistent/kubeconfig'}),
      'KUBECONFIG_NOT_FOUND',
      /does not exist/,
    ],
    [
      'malformed YAML',
      () => {
        writeFileSync(join(dir, 'bad'), 'clusters: [\n  - {name: x')
        KubeconfigSet.load({kubeconfig: join(dir, 'bad')})
      },
      'KUBECONFIG_MALFORMED',
      /kubeconfig .*bad is malformed/,
    ],
    [
      'a context whose cluster is not defined',
      () => {
        writeFileSync(join(dir, 'dangling'), kubeconfig({clusters: {}, contexts: {lost: 'nowhere'}}))
        KubeconfigSet.load({kubeconfig: join(dir, 'dangling')}).forContext('lost')
      },
      'KUBECONFIG_MALFORMED',
      /context "lost" refers to cluster "nowhere", which is not defined/,
    ],
    [
      'no context given and no current context',
      () => {
        writeFileSync(join(dir, 'nocurrent'), kubeconfig({clusters: {c: 'https://c:1'}, contexts: {x: 'c'}}))
        KubeconfigSet.load({kubeconfig: join(dir, 'nocurrent')}).resolveContext(undefined, '--host-context')
      },
      'CONTEXT_NOT_FOUND',
      /no context given/,
    ],
  ]
  for (const [name, load, code, message] of failures) {
    it(`fails with a usage error on ${name}`, () => {
      assert.throws(load, (error: unknown) => {
        assert.ok(error instanceof KsctlError)
        assert.equal(error.code, code)
        assert.equal(error.exitCode, 2)
        assert.match(error.message, message)
        return true
      })
    })
  }
})
