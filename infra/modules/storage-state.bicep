// The product's state storage account. Containers:
//   dsr-state            aggregator state (soft delete protects against bad writes)
//   dsr-exports          export bundles; lifecycle rule deletes them after the link expiry
//   dsr-audit            append-only audit records; time-based immutability (WORM)
//   dsr-intake-archive   original payload of every intake message, including rejected ones
//   dsr-reports          deletion certificates and export manifests (state.rs REPORTS)
//   dsr-eventgrid-deadletter  Event Grid dead-letters for the workspace-deleted subscription
param name string
param location string
param tags object
@description('Storage SKU. GRS by default: the audit trail is a legal record (CCPA 24-month keeping).')
param skuName string = 'Standard_GRS'
@description('Principal id of the function app identity.')
param appPrincipalId string
@minValue(1)
@maxValue(365)
@description('Blob soft-delete retention. NOTE: applies to the whole account, so a deleted export bundle stays recoverable (and physically present) for this many days after deletion.')
param softDeleteDays int = 7
@minValue(1)
@description('Days after which export bundles are deleted (DSR_EXPORT_LINK_DAYS).')
param exportLinkDays int = 7
@minValue(1)
@description('Time-based retention of dsr-audit, in days (730 = CCPA 24-month record keeping).')
param auditRetentionDays int = 730
@minValue(1)
@maxValue(3650)
@description('Days after which a finished request\'s working state and the intake archive are removed (DSR_STATE_RETENTION_DAYS).')
param stateRetentionDays int = 90
@minValue(1)
@description('Days after which Event Grid dead-letter blobs are deleted.')
param deadLetterRetentionDays int = 30

var containers = [
  'dsr-state'
  'dsr-exports'
  'dsr-audit'
  'dsr-intake-archive'
  'dsr-reports'
]
var eventGridDeadLetterContainer = 'dsr-eventgrid-deadletter'

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Blob Delegator: only Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action.
// Needed to sign user-delegation SAS links for export bundles; that action exists only at
// account scope, so it is granted there WITHOUT any data access.
var storageBlobDelegator = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'

resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
      }
    }
  }
}

resource blob 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: sa
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
      // Permanent delete stays off: the app never needs to bypass soft delete of its own state.
      allowPermanentDelete: false
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource dataContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for c in containers: {
  parent: blob
  name: c
  properties: {
    publicAccess: 'None'
  }
}]

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blob
  name: eventGridDeadLetterContainer
  properties: {
    publicAccess: 'None'
  }
}

// dsr-audit: time-based retention (WORM). Deployed UNLOCKED: an unlocked policy can still be
// shortened or removed by an administrator; lock it once the period is agreed
// (az storage container immutability-policy lock). allowProtectedAppendWrites lets the app
// keep appending to append blobs while existing blocks stay immutable.
resource auditImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: dataContainers[2]
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditRetentionDays
    allowProtectedAppendWrites: true
  }
}

// Lifecycle: export bundles are personal data; delete them once the download link expired.
// Lifecycle runs about once a day, so deletion can lag the expiry by up to ~48 hours, and the
// deleted blob then stays soft-deleted for softDeleteDays.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: sa
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-expired-exports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
                'appendBlob'
              ]
              prefixMatch: [
                'dsr-exports/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: exportLinkDays
                }
              }
              snapshot: {
                delete: {
                  daysAfterCreationGreaterThan: exportLinkDays
                }
              }
            }
          }
        }
        {
          // Raw intake payloads (UPNs, names) are personal data: gone after stateRetentionDays
          // (the retention-sweep timer does the same; the timer alone removes finished requests'
          // working state under dsr-state/requests/, because a lifecycle rule cannot tell a
          // finished request from one still in progress).
          name: 'delete-old-intake-archive'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'dsr-intake-archive/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: stateRetentionDays
                }
              }
            }
          }
        }
        {
          name: 'delete-old-eventgrid-deadletters'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${eventGridDeadLetterContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deadLetterRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    dataContainers
    deadLetterContainer
  ]
}

// Storage Blob Data Contributor scoped to EACH product container (not the account): a
// container added later for another purpose is not reachable by the app.
resource containerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (c, i) in containers: {
  name: guid(dataContainers[i].id, appPrincipalId, storageBlobDataContributor)
  scope: dataContainers[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}]

resource delegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sa.id, appPrincipalId, storageBlobDelegator)
  scope: sa
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegator)
  }
}

output id string = sa.id
output name string = sa.name
output blobEndpoint string = sa.properties.primaryEndpoints.blob
output deadLetterContainerName string = eventGridDeadLetterContainer
output deadLetterContainerId string = deadLetterContainer.id
