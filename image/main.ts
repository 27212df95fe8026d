/**
 * `npm run image`: builds ksctl's OCI image into out/ksctl-<version>.oci.tar (after `npm run build`), and with
 * `--unpack` unpacks it for the tests' pod runner. stdout carries the archive's path; stderr the steps.
 */
import {parseArgs} from 'node:util'

import {buildImage} from './build.js'
import {unpackCached} from './unpack.js'

const {values} = parseArgs({options: {unpack: {type: 'boolean', default: false}}})
const built = await buildImage().catch((error: unknown) => {
  // A failed tool's own words (apt, npm, umoci) are the message; a stack trace would bury them.
  process.stderr.write(`npm run image: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`
for (const layer of built.layers)
  process.stderr.write(
    `layer ${layer.name.padEnd(12)} ${megabytes(layer.size).padStart(9)}  ${layer.digest}\n`,
  )
process.stderr.write(
  `image ksctl:${built.tag}, ${megabytes(built.compressedSize)} compressed, manifest ${built.manifestDigest}\n` +
    `load it into a registry: skopeo copy oci-archive:${built.archive} docker://REGISTRY/ksctl:${built.tag}\n`,
)
if (values.unpack) {
  const unpacked = await unpackCached(built.archive)
  process.stderr.write(`unpacked into ${unpacked.rootfs}\n`)
}
process.stdout.write(`${built.archive}\n`)
