// Event Grid system topic on the subscription + subscription for Azure ML workspace deletes,
// delivered to the workspace-deleted function.
// NOTE: an Azure subscription can hold only ONE system topic of type
// Microsoft.Resources.Subscriptions. If one exists already, set existingSystemTopicName.
param location string = 'global'
param tags object
param systemTopicName string
@description('Name of an existing Microsoft.Resources.Subscriptions system topic in this resource group to reuse. Empty = create one.')
param existingSystemTopicName string = ''
param functionAppId string
param functionName string = 'workspace-deleted'
param stateAccountId string
param deadLetterContainerName string
@description('Create the event subscription. The target function must already exist (code deployed), otherwise ARM rejects the azureFunction endpoint.')
param createEventSubscription bool = true

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var createTopic = empty(existingSystemTopicName)

resource newTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: systemTopicName
  location: location
  tags: tags
  identity: {
    // Used to write dead-letters with Entra auth (the state account allows no shared keys).
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource existingTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!createTopic) {
  name: createTopic ? 'unused' : existingSystemTopicName
}

resource stateAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: last(split(stateAccountId, '/'))
}

resource stateBlob 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: stateAccount
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: stateBlob
  name: deadLetterContainerName
}

// The topic identity may write dead-letters into that ONE container only.
resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createTopic) {
  name: guid(deadLetterContainer.id, systemTopicName, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    principalId: newTopic.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}

resource subNew 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (createEventSubscription && createTopic) {
  parent: newTopic
  name: 'dsr-workspace-deleted'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: [
            'Microsoft.MachineLearningServices/workspaces/delete'
          ]
        }
      ]
    }
    // Event Grid retries with exponential backoff for up to 24 h, then dead-letters: a missed
    // workspace delete means soft-deleted personal data nobody purges.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: stateAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
  dependsOn: [
    topicDeadLetterWriter
  ]
}

resource subExisting 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (createEventSubscription && !createTopic) {
  parent: existingTopic
  name: 'dsr-workspace-deleted'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: [
            'Microsoft.MachineLearningServices/workspaces/delete'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    // An existing topic's identity is not managed here: grant it Storage Blob Data Contributor on
    // the dead-letter container yourself (see docs/deploy.md) before this subscription is created.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: stateAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output systemTopicName string = createTopic ? newTopic.name : existingTopic.name
