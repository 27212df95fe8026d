// @peculiar/x509 2.x resolves its algorithms through tsyringe, which refuses to load unless the Reflect
// metadata API exists. It only stores and reads injection tokens, so this small registry is enough and
// spares the project the reflect-metadata package. Import this module before @peculiar/x509.

type MetadataTarget = object
type PropertyKeyOrNone = PropertyKey | undefined

const registry = new WeakMap<MetadataTarget, Map<PropertyKeyOrNone, Map<unknown, unknown>>>()

function ownMetadataMap(target: MetadataTarget, propertyKey: PropertyKeyOrNone, create: boolean) {
  let byProperty = registry.get(target)
  if (!byProperty) {
    if (!create) return undefined
    byProperty = new Map()
    registry.set(target, byProperty)
  }
  let byKey = byProperty.get(propertyKey)
  if (!byKey && create) {
    byKey = new Map()
    byProperty.set(propertyKey, byKey)
  }
  return byKey
}

function getOwnMetadata(key: unknown, target: MetadataTarget, propertyKey?: PropertyKey): unknown {
  return ownMetadataMap(target, propertyKey, false)?.get(key)
}

function getMetadata(key: unknown, target: MetadataTarget, propertyKey?: PropertyKey): unknown {
  for (
    let current: MetadataTarget | null = target;
    current;
    current = Object.getPrototypeOf(current) as object | null
  ) {
    const byKey = ownMetadataMap(current, propertyKey, false)
    if (byKey?.has(key)) return byKey.get(key)
  }
  return undefined
}

function defineMetadata(
  key: unknown,
  value: unknown,
  target: MetadataTarget,
  propertyKey?: PropertyKey,
): void {
  ownMetadataMap(target, propertyKey, true)?.set(key, value)
}

if (!('getMetadata' in Reflect)) {
  Object.assign(Reflect, {getMetadata, getOwnMetadata, defineMetadata})
}
