/**
 * The image's bottom layer from Debian's packages, without a container daemon or a chroot: apt resolves and
 * verifies each package (its signed lists name the file's SHA-256), dpkg-deb extracts its files, and no
 * maintainer script runs, so nothing needs a shell inside the image. What the scripts would have made (the CA
 * bundle) is made here.
 */
import {createHash} from 'node:crypto'
import {createReadStream, existsSync} from 'node:fs'
import {appendFile, chmod, mkdir, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {caBundlePath, debianPackages, imageUser} from './image.js'
import {run} from './run.js'

export interface DebianPackage {
  name: string
  version: string
  architecture: string
  sha256: string
}

/** The version apt would install of each package now, from the machine's package lists (one apt-cache call). */
export async function candidatePackages(names: readonly string[] = debianPackages): Promise<DebianPackage[]> {
  let records: string
  try {
    records = await run('apt-cache', ['show', '--no-all-versions', ...names])
  } catch (error) {
    throw new Error(
      `apt knows not all of ${names.join(', ')}: run "apt-get update" (the image's base comes from Debian's packages)`,
      {cause: error},
    )
  }
  const byName = new Map<string, DebianPackage>()
  for (const record of records.split(/\n\s*\n/)) {
    const field = (key: string) => new RegExp(`^${key}: (.+)$`, 'm').exec(record)?.[1]?.trim()
    const [name, version, architecture, sha256] = [
      field('Package'),
      field('Version'),
      field('Architecture'),
      field('SHA256'),
    ]
    if (name === undefined) continue
    if (version === undefined || architecture === undefined || sha256 === undefined)
      throw new Error(`apt-cache show ${name} gave no Version, Architecture and SHA256:\n${record}`)
    byName.set(name, {name, version, architecture, sha256})
  }
  return names.map((name) => {
    const pkg = byName.get(name)
    if (pkg === undefined) throw new Error(`apt knows no package ${name}: run "apt-get update"`)
    return pkg
  })
}

/** apt-get download's file name: the version's epoch colon is written %3a. */
function debFileName(pkg: DebianPackage): string {
  return `${pkg.name}_${pkg.version.replace(/:/g, '%3a')}_${pkg.architecture}.deb`
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/**
 * Each package's .deb in `cacheDir`, downloaded only when missing; a cached file is used only when its
 * SHA-256 is the one apt's signed lists give, so a cache can never put a changed file into the image.
 */
export async function downloadPackages(packages: DebianPackage[], cacheDir: string): Promise<string[]> {
  await mkdir(cacheDir, {recursive: true})
  const files: string[] = []
  const missing: DebianPackage[] = []
  for (const pkg of packages) {
    const file = path.join(cacheDir, debFileName(pkg))
    files.push(file)
    if (!existsSync(file) || (await sha256Of(file)) !== pkg.sha256) missing.push(pkg)
  }
  if (missing.length > 0) {
    // As root apt downloads as _apt, which may not write into the cache; the lists' hashes still check each file.
    await run(
      'apt-get',
      ['-qq', '-o', 'APT::Sandbox::User=root', 'download', ...missing.map((p) => `${p.name}=${p.version}`)],
      {cwd: cacheDir},
    )
  }
  for (const [index, pkg] of packages.entries()) {
    const file = files[index] ?? ''
    if ((await sha256Of(file)) !== pkg.sha256)
      throw new Error(`${file} does not have the SHA-256 apt's lists give for ${pkg.name} ${pkg.version}`)
  }
  return files
}

/** What the runtime never uses: documentation other than copyright notices, manuals, scripts, debugger helpers. */
const prunedPaths = [
  'usr/share/man',
  'usr/share/info',
  'usr/share/lintian',
  'usr/share/gdb',
  'usr/share/gcc',
  'usr/share/base-files',
  'usr/share/locale',
  // Character-set converters for iconv(3): Node.js converts with its own ICU.
  'usr/lib/x86_64-linux-gnu/gconv',
  // Shell scripts (update-ca-certificates, the motd's scripts): there is no shell to run them.
  'usr/sbin/update-ca-certificates',
  'etc/update-motd.d',
  'etc/ca-certificates/update.d',
  'usr/bin/tini-static',
]

/** Writes the bottom layer's file system into `root`: the packages' files and the few files a system needs. */
export async function stageDebianRoot(debs: string[], root: string): Promise<void> {
  await mkdir(root, {recursive: true})
  const statusDirectory = path.join(root, 'var/lib/dpkg/status.d')
  await mkdir(statusDirectory, {recursive: true})
  for (const deb of debs) {
    await run('dpkg-deb', ['--extract', deb, root])
    // One control file per package, as distroless images keep them: scanners find the versions there.
    const control = await run('dpkg-deb', ['--field', deb])
    const name = /^Package: (.+)$/m.exec(control)?.[1] ?? path.basename(deb)
    await writeFile(path.join(statusDirectory, name), `${control.trim()}\n`)
  }
  for (const pruned of prunedPaths) await rm(path.join(root, pruned), {recursive: true, force: true})
  await keepOnlyCopyrightNotices(path.join(root, 'usr/share/doc'))
  await writeCaBundle(root)
  await writeSystemFiles(root)
}

async function keepOnlyCopyrightNotices(docDirectory: string): Promise<void> {
  for (const entry of await readdir(docDirectory, {withFileTypes: true, recursive: true})) {
    const full = path.join(entry.parentPath, entry.name)
    if (!entry.isDirectory() && entry.name !== 'copyright') await rm(full, {force: true})
  }
  // Empty directories (examples/…) go after their files.
  const directories = (await readdir(docDirectory, {withFileTypes: true, recursive: true}))
    .filter((entry) => entry.isDirectory())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort((a, b) => b.length - a.length)
  for (const directory of directories)
    if ((await readdir(directory)).length === 0) await rm(directory, {recursive: true})
}

/**
 * The bundle update-ca-certificates would write: every certificate of the package, in name order, each
 * ending with a newline.
 */
async function writeCaBundle(root: string): Promise<void> {
  const source = path.join(root, 'usr/share/ca-certificates')
  const certificates = (await readdir(source, {recursive: true}))
    .filter((name) => name.endsWith('.crt'))
    .sort()
  if (certificates.length === 0) throw new Error('the ca-certificates package held no certificate')
  const bundle = path.join(root, caBundlePath)
  await mkdir(path.dirname(bundle), {recursive: true})
  await writeFile(bundle, '')
  for (const name of certificates) {
    const pem = await readFile(path.join(source, name), 'utf8')
    await appendFile(bundle, pem.endsWith('\n') ? pem : `${pem}\n`)
  }
}

/** Users, name service and the directories a container expects; the maintainer scripts would have made them. */
async function writeSystemFiles(root: string): Promise<void> {
  const {uid, gid, name, home} = imageUser
  await writeFile(
    path.join(root, 'etc/passwd'),
    [
      'root:x:0:0:root:/root:/usr/sbin/nologin',
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
      `${name}:x:${String(uid)}:${String(gid)}:${name}:${home}:/usr/sbin/nologin`,
      '',
    ].join('\n'),
  )
  await writeFile(
    path.join(root, 'etc/group'),
    ['root:x:0:', 'nogroup:x:65534:', `${name}:x:${String(gid)}:`, ''].join('\n'),
  )
  await writeFile(
    path.join(root, 'etc/nsswitch.conf'),
    'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n',
  )
  for (const directory of ['proc', 'sys', 'dev', 'run', 'root', 'tmp', 'var/tmp', home.slice(1)])
    await mkdir(path.join(root, directory), {recursive: true})
  await chmod(path.join(root, 'tmp'), 0o1777)
  await chmod(path.join(root, 'var/tmp'), 0o1777)
  await chmod(path.join(root, 'root'), 0o700)
  await chmod(path.join(root, home.slice(1)), 0o700)
}
