import assert from 'node:assert/strict'
import {existsSync, mkdirSync, readdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {cacheRoot, resolveBinaries} from '../../../src/local-cluster/binaries.js'
import {goIsNewEnough, pinnedModule} from '../../../src/local-cluster/go-build.js'
import {KsctlError} from '../../../src/errors.js'
import {tempDir} from '../../helpers/temp-dir.js'

/** A directory holding executable kube-apiserver and etcd files (scripts: nothing runs them here). */
function binaryDir(prefix: string): string {
  const dir = tempDir(prefix)
  for (const binary of ['kube-apiserver', 'etcd']) {
    writeFileSync(path.join(dir, binary), '#!/bin/sh\n', {mode: 0o755})
  }
  return dir
}

/**
 * A PATH whose `go` reports `version` and, for `go build -o FILE`, writes FILE and logs its arguments: what
 * the resolution asks of Go, without minutes of compiling.
 */
function fakeGo(version: string): {path: string; calls: string} {
  const dir = tempDir('ksctl-fake-go-')
  const calls = path.join(dir, 'calls')
  writeFileSync(
    path.join(dir, 'go'),
    [
      '#!/bin/sh',
      `if [ "$1" = env ]; then echo go${version}; exit 0; fi`,
      `echo "$@" >> ${calls}`,
      'while [ $# -gt 0 ]; do if [ "$1" = -o ]; then printf "#!/bin/sh\\n" > "$2"; chmod +x "$2"; fi; shift; done',
    ].join('\n'),
    {mode: 0o755},
  )
  return {path: `${dir}${path.delimiter}/usr/bin${path.delimiter}/bin`, calls}
}

const noGo = {PATH: '/nonexistent'}

describe('local cluster binaries', function () {
  const module = pinnedModule()

  it('reads the pinned versions and the Go they need from templates/local-cluster/go.mod', () => {
    assert.match(module.kubernetes, /^v1\.\d+\.\d+$/)
    assert.match(module.etcd, /^v3\.\d+\.\d+$/)
    assert.match(module.go, /^1\.\d+(\.\d+)?$/)
    assert.match(module.buildName, /^kube-v1\.\d+\.\d+-etcd-v3\.\d+\.\d+-[0-9a-f]{12}$/)
  })

  it('takes --apiserver-bin and --etcd-bin first, over KUBEBUILDER_ASSETS and the cache', async () => {
    const flags = binaryDir('ksctl-flags-')
    const assets = binaryDir('ksctl-assets-')
    const found = await resolveBinaries({
      apiserverBin: path.join(flags, 'kube-apiserver'),
      etcdBin: path.join(flags, 'etcd'),
      env: {...noGo, KUBEBUILDER_ASSETS: assets},
    })
    assert.deepEqual(found, {
      kubeApiserver: path.join(flags, 'kube-apiserver'),
      etcd: path.join(flags, 'etcd'),
      source: 'flags',
    })
  })

  it('refuses one of --apiserver-bin and --etcd-bin without the other', async () => {
    const flags = binaryDir('ksctl-flags-')
    await assert.rejects(
      resolveBinaries({apiserverBin: path.join(flags, 'kube-apiserver'), env: noGo}),
      /--apiserver-bin and --etcd-bin go together/,
    )
  })

  it('takes KUBEBUILDER_ASSETS next, and builds nothing even when Go is there', async () => {
    const assets = binaryDir('ksctl-assets-')
    const go = fakeGo('1.99.0')
    const cache = tempDir('ksctl-cache-')
    const found = await resolveBinaries({
      env: {PATH: go.path, KUBEBUILDER_ASSETS: assets, KSCTL_CACHE_DIR: cache},
    })
    assert.equal(found.source, 'KUBEBUILDER_ASSETS')
    assert.equal(found.kubeApiserver, path.join(assets, 'kube-apiserver'))
    assert.equal(existsSync(go.calls), false, 'go build ran')
    assert.deepEqual(readdirSync(cache), [])
  })

  it('says what is missing when KUBEBUILDER_ASSETS lacks a binary, instead of looking further', async () => {
    const assets = tempDir('ksctl-assets-')
    writeFileSync(path.join(assets, 'kube-apiserver'), '#!/bin/sh\n', {mode: 0o755})
    await assert.rejects(
      resolveBinaries({env: {...noGo, KUBEBUILDER_ASSETS: assets}}),
      (error: unknown) =>
        error instanceof KsctlError &&
        error.message.includes(`KUBEBUILDER_ASSETS: ${path.join(assets, 'etcd')} does not exist`),
    )
  })

  it("takes ksctl's cache next", async () => {
    const cache = tempDir('ksctl-cache-')
    const cached = path.join(cache, 'local-cluster', module.buildName)
    mkdirSync(cached, {recursive: true})
    for (const binary of ['kube-apiserver', 'etcd'])
      writeFileSync(path.join(cached, binary), '#!/bin/sh\n', {mode: 0o755})
    const found = await resolveBinaries({env: {...noGo, KSCTL_CACHE_DIR: cache}})
    assert.deepEqual(found, {
      kubeApiserver: path.join(cached, 'kube-apiserver'),
      etcd: path.join(cached, 'etcd'),
      source: 'cache',
    })
  })

  it('builds both from the pinned module into the cache when Go is new enough, then finds them there', async () => {
    const cache = tempDir('ksctl-cache-')
    const go = fakeGo('1.99.0')
    const env = {PATH: go.path, KSCTL_CACHE_DIR: cache}
    const built = await resolveBinaries({env})
    const cached = path.join(cache, 'local-cluster', module.buildName)
    assert.equal(built.source, 'build')
    assert.equal(built.kubeApiserver, path.join(cached, 'kube-apiserver'))
    assert.deepEqual(readdirSync(cached).sort(), ['etcd', 'kube-apiserver'])
    assert.deepEqual(
      readdirSync(path.join(cache, 'local-cluster')),
      [module.buildName],
      'a leftover build dir',
    )
    const again = await resolveBinaries({env})
    assert.equal(again.source, 'cache')
  })

  for (const [situation, env, reason] of [
    ['there is no go', noGo, /there is no go on PATH/],
    ['go is too old', {PATH: fakeGo('1.20.1').path}, /the go on PATH is Go 1\.20\.1, older than the Go/],
  ] as const) {
    it(`names the four ways to get the binaries when ${situation}, and creates nothing`, async () => {
      const cache = tempDir('ksctl-cache-')
      const error = await resolveBinaries({env: {...env, KSCTL_CACHE_DIR: cache}}).then(
        () => assert.fail('resolved'),
        (caught: unknown) => caught,
      )
      assert.ok(error instanceof KsctlError)
      assert.equal(error.code, 'PRECONDITION_FAILED')
      assert.match(error.message, reason)
      const ways = error.suggestions.join('\n')
      assert.match(ways, /--apiserver-bin PATH --etcd-bin PATH/)
      assert.match(ways, /KUBEBUILDER_ASSETS/)
      assert.match(ways, new RegExp(`ksctl's cache: ${path.join(cache, 'local-cluster', module.buildName)}`))
      assert.match(ways, /install Go .* or newer/)
      assert.deepEqual(readdirSync(cache), [])
    })
  }

  it('places the cache in KSCTL_CACHE_DIR, else XDG_CACHE_HOME/ksctl', () => {
    assert.equal(cacheRoot({KSCTL_CACHE_DIR: '/c'}), '/c')
    assert.equal(cacheRoot({XDG_CACHE_HOME: '/x'}), '/x/ksctl')
  })

  it('compares Go versions as Go does', () => {
    assert.equal(goIsNewEnough('1.25.0', '1.25'), true)
    assert.equal(goIsNewEnough('1.24.7', '1.25.0'), false)
    assert.equal(goIsNewEnough('1.26rc1', '1.25.3'), true)
    assert.equal(goIsNewEnough('devel go1.27-abc', '1.25.0'), true)
  })
})
