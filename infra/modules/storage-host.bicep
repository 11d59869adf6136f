// Host storage account for the Functions runtime (AzureWebJobsStorage: leases, timer
// schedule monitor, secrets) and the Flex Consumption deployment container.
// It holds no personal data; it is kept separate from the state account so that the
// broad "Storage Blob Data Owner" role the host needs does not reach DSR data.
param name string
param location string
param tags object
param deploymentContainerName string
@description('Principal id of the function app identity.')
param appPrincipalId string
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7
@description('Use Standard_LRS in regions without availability zones.')
@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
param hostStorageSku string = 'Standard_ZRS'

// Storage Blob Data Owner: documented requirement for AzureWebJobsStorage with an identity
// (the host creates/uses containers azure-webjobs-hosts and azure-webjobs-secrets and takes
// blob leases). Scoped to this dedicated account only. Queue/Table roles are NOT granted:
// no trigger of this app (Service Bus, timer, Event Grid) uses host queues or tables.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'

resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: host account holds no product data (leases, timer state, app package); see infra/CHECKOV.md
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // ZRS: the Functions host keeps leases and timer schedule state here; zone-redundant is
    // cheap insurance and a prerequisite for a zone-redundant Flex plan later. No geo copy:
    // nothing here is worth replicating to another region (it is rebuilt by a redeploy).
    name: hostStorageSku
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Identity-based access only: no account keys, no SAS signed with account keys.
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
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blob
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sa.id, appPrincipalId, storageBlobDataOwner)
  scope: sa
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

output id string = sa.id
output name string = sa.name
output blobEndpoint string = sa.properties.primaryEndpoints.blob
